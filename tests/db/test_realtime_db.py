"""The realtime SQL functions (db/schema/19_vechat_realtime.sql) as vechat_app, under RLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database, FreshDatabase
from tests.support.postgres import TestPostgres
from tests.support.seed import C1, C2, P1, P2, Seed, User

pytestmark = pytest.mark.db


@dataclass
class World:
    postgres: TestPostgres
    database: str
    seeds: list[Seed]

    def app(self) -> psycopg.Connection[Any]:
        return h.app_connect(self.postgres, self.database)

    def admin(self) -> psycopg.Connection[Any]:
        return h.admin_connect(self.postgres, self.database)


@pytest.fixture(scope="module")
def world(migrated_database: Database, postgres: TestPostgres) -> Iterator[World]:
    database = migrated_database.name
    with h.organisations(postgres, database, 2) as ids:
        with h.admin_connect(postgres, database) as conn:
            seeds = [h.seed_organisation(conn, o) for o in ids]
            conn.commit()
        yield World(postgres, database, seeds)


def events_of(world: World, organisation_id: int, user: User) -> list[tuple[Any, ...]]:
    with world.admin() as conn:
        return conn.execute(
            """SELECT recipient_type::text, recipient_id, seq, event_type::text
               FROM vechat_events WHERE organisation_id = %s AND recipient_type = %s
                 AND recipient_id = %s ORDER BY seq""",
            (organisation_id, user.user_type, user.user_id),
        ).fetchall()


def read_events(
    conn: psycopg.Connection[Any],
    organisation_id: int,
    users: list[User],
    limit: int = 1000,
    since: int = 0,
) -> list[Any]:
    recipients = [[organisation_id, u.user_type, u.user_id, since] for u in users]
    return conn.execute(
        """SELECT recipient_type, recipient_id, seq, event_type
           FROM vechat.read_events(%s, %s)""",
        (json.dumps(recipients), limit),
    ).fetchall()


def context(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute(
        """SELECT vechat.current_organisation_id(), vechat.current_user_id(),
                  vechat.current_user_type()"""
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_read_events_reads_each_recipient_under_their_own_context(world: World) -> None:
    a = world.seeds[0].organisation_id
    with world.app() as conn:
        h.act_as(conn, a, P2)
        rows = read_events(conn, a, [P1, C1, C2])
        expected = events_of(world, a, P1) + events_of(world, a, C1) + events_of(world, a, C2)
        assert rows == expected and len(events_of(world, a, P1)) > 1
        assert context(conn) == (a, P2.user_id, P2.user_type)  # the caller's context is back
        limited = read_events(conn, a, [P1, C1], limit=1)
        assert [r[:2] for r in limited] == [("personnel", P1.user_id), ("client", C1.user_id)]
        # A recipient whose cursor is not beyond `since` is skipped.
        last = events_of(world, a, P1)[-1][2]
        assert read_events(conn, a, [P1], since=last) == []
        assert read_events(conn, a, [P1], since=last - 1) == events_of(world, a, P1)[-1:]
        conn.rollback()


def test_read_events_returns_each_message_as_its_recipient_reads_it(world: World) -> None:
    a = world.seeds[0].organisation_id
    recipients = json.dumps([[a, P1.user_type, P1.user_id, 0]])
    with world.app() as conn:
        h.act_as(conn, a, P2)  # not a participant of P1's conversation with C1
        rows = conn.execute(
            """SELECT e.event_type, e.message_id, (e.message).id, (e.message).message,
                      (e.message).organisation_id, e.receipts_shown
               FROM vechat.read_events(%s) e""",
            (recipients,),
        ).fetchall()
        created = [r for r in rows if r[0] == "message.created"]
        # Unread: no read_at to show or hide, so the receipt rule is not even asked.
        assert created and all(r[2] == r[1] and r[4] == a and r[5] is None for r in created)
        assert "hello!" in [r[3] for r in created]
        # P2's own reads see none of them: the rows came from P1's context inside the call.
        count = conn.execute(
            "SELECT count(*) FROM vechat_messages WHERE id = ANY(%s)", ([r[1] for r in created],)
        ).fetchone()
        assert count == (0,)
        conn.rollback()


def test_read_events_brings_the_reply_and_the_receipt_rule_where_the_event_needs_them(
    migrated_database: Database, postgres: TestPostgres
) -> None:
    """The message replied to, as the recipient reads it, comes with a reply's events; whether
    the receiver shows read receipts comes with events of a message that has a read_at, and
    follows the receiver's setting."""
    database = migrated_database.name
    with (
        h.organisations(postgres, database, 1) as (o,),
        h.admin_connect(postgres, database) as admin,
    ):
        h.seed_organisation(admin, o)  # C1 replied "hi" to P1's "hello!"
        admin.commit()

        def p1_events() -> dict[int, list[tuple[Any, ...]]]:
            with h.app_connect(postgres, database, autocommit=True) as conn:
                rows = conn.execute(
                    """SELECT e.message_id, (e.message).message, (e.reply_to).id,
                              (e.reply_to).message, e.receipts_shown
                       FROM vechat.read_events(%s) e
                       WHERE e.event_type = 'message.created'""",
                    (json.dumps([[o, P1.user_type, P1.user_id, 0]]),),
                ).fetchall()
            by_id: dict[int, list[tuple[Any, ...]]] = {}
            for row in rows:
                by_id.setdefault(row[0], []).append(row[1:])
            return by_id

        events = p1_events()
        hello = next(i for i, rows in events.items() if rows[0][0] == "hello!")
        hi = next(i for i, rows in events.items() if rows[0][0] == "hi")
        assert events[hi] == [("hi", hello, "hello!", None)]
        assert events[hello] == [("hello!", None, None, None)]
        # C1 reads "hello!": P1, its sender, may see when -- unless C1 hides read receipts.
        h.act_as(admin, o, C1)
        admin.execute(
            "UPDATE vechat_messages SET is_read = true WHERE organisation_id = %s AND id = %s",
            (o, hello),
        )
        admin.commit()
        assert p1_events()[hello] == [("hello!", None, None, True)]
        admin.execute(
            """UPDATE vechat_presence SET show_read_receipts = false
               WHERE organisation_id = %s AND user_type = %s AND user_id = %s""",
            (o, C1.user_type, C1.user_id),
        )
        admin.commit()
        assert p1_events()[hello] == [("hello!", None, None, False)]


def test_read_events_plans_once_however_long_a_recipients_history(
    migrated_database: Database, postgres: TestPostgres
) -> None:
    """The hub calls read_events for every wake-up with each recipient's `since`. With the
    default plan_cache_mode the events query's custom plan for `seq > <since>` wins over the
    generic one once a history is long, and every recipient of every call was planned again
    (8x the CPU with 1,000 messages: bench/read_events.py). auto_explain shows the plan each call
    ran: a generic plan compares with parameters, a custom one with the call's values."""
    database = migrated_database.name
    with h.organisations(postgres, database, 1) as (o,):
        with h.admin_connect(postgres, database) as admin:
            seed = h.seed_organisation(admin, o)
            h.act_as(admin, o, P1)
            admin.execute(
                """INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id,
                       sender_type, receiver_id, receiver_type, message)
                   SELECT %s, %s, %s, %s, %s, %s, 'history ' || n
                   FROM generate_series(1, 1500) n""",
                (o, seed.conversation_id, P1.user_id, P1.user_type, C1.user_id, C1.user_type),
            )
            admin.commit()
            admin.autocommit = True
            admin.execute("ANALYZE vechat_events")
            last = events_of(World(postgres, database, [seed]), o, C1)[-1][2]
            plans: list[str] = []
            admin.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
            admin.execute("LOAD 'auto_explain'")
            for setting, value in (
                ("log_min_duration", "0"),
                ("log_nested_statements", "on"),
                ("log_level", "notice"),
            ):
                admin.execute(f"SET auto_explain.{setting} = {value}")
            admin.execute("SET ROLE vechat_app")
            for _ in range(8):  # past the five custom plans a statement starts with
                plans.clear()
                assert len(read_events(admin, o, [C1], since=last - 1)) == 1
        events_query = [p for p in plans if "Index Scan using vechat_events_pkey" in p]
        assert len(events_query) == 1, plans
        assert f"(seq > '{last - 1}'::bigint)" not in events_query[0], events_query[0]
        assert "seq > $" in events_query[0], events_query[0]


def test_read_events_as_a_statement_of_its_own_leaves_no_tenant_behind(world: World) -> None:
    a, b = (s.organisation_id for s in world.seeds)
    with world.app() as conn:
        conn.autocommit = True  # how the hub calls it: one statement, its own transaction
        rows = read_events(conn, b, [P1, C1])
        assert rows == events_of(world, b, P1) + events_of(world, b, C1) and rows
        assert context(conn) == (None, None, None)
        assert conn.execute("SELECT count(*) FROM vechat_events").fetchone() == (0,)
        # In a transaction without a tenant, the function's tenant ends with the call too.
        conn.autocommit = False
        assert read_events(conn, a, [P1]) == events_of(world, a, P1)
        assert context(conn) == (None, None, None)
        assert conn.execute("SELECT count(*) FROM vechat_events").fetchone() == (0,)
        conn.rollback()


def test_read_events_never_crosses_the_organisation_of_the_transaction(world: World) -> None:
    a, b = (s.organisation_id for s in world.seeds)
    with world.admin() as admin:  # one more message in a: the two logs differ
        h.insert_message(admin, a, world.seeds[0].conversation_id, P1, C1, "only in a")
        admin.commit()
    with world.app() as conn:
        h.act_as(conn, b, P2)
        rows = read_events(conn, b, [P1, C1])
        assert rows == events_of(world, b, P1) + events_of(world, b, C1)
        assert len(rows) + 2 == len(events_of(world, a, P1) + events_of(world, a, C1))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="another organisation"):
            read_events(conn, a, [P1, C1])
        conn.rollback()
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="without organisation"):
            conn.execute("""SELECT * FROM vechat.read_events('[[null, "client", 12, 0]]')""")
        conn.rollback()


def test_read_events_serves_several_organisations_in_one_statement(world: World) -> None:
    a, b = (s.organisation_id for s in world.seeds)
    recipients = [
        [b, "client", C1.user_id, 0],
        [a, "personnel", P1.user_id, 0],
        [b, "personnel", P1.user_id, 0],
    ]
    with world.app() as conn:
        conn.autocommit = True
        rows = conn.execute(
            """SELECT organisation_id, recipient_type, recipient_id, seq, event_type,
                      (message).organisation_id
               FROM vechat.read_events(%s)""",
            (json.dumps(recipients),),
        ).fetchall()
        # Grouped by organisation, each recipient's events in seq order, each message its own
        # organisation's: same ids in both organisations, never mixed.
        expected = [(a, *e) for e in events_of(world, a, P1)] + [
            (b, *e) for e in events_of(world, b, C1) + events_of(world, b, P1)
        ]
        assert [r[:5] for r in rows] == expected
        assert all(r[5] in (None, r[0]) for r in rows) and any(r[5] == b for r in rows)
        assert context(conn) == (None, None, None)


def test_prune_own_events_deletes_only_the_callers_old_events(world: World) -> None:
    a = world.seeds[0].organisation_id
    with world.admin() as admin:
        admin.execute(
            """UPDATE vechat_events SET created_at = now() - interval '8 days'
               WHERE organisation_id = %s AND recipient_id IN (%s, %s)""",
            (a, P1.user_id, C1.user_id),
        )
        admin.commit()
    c1_before = events_of(world, a, C1)
    p1_last = events_of(world, a, P1)[-1][2]
    with world.app() as conn:
        h.act_as(conn, a, P1)
        pruned = conn.execute("SELECT vechat.prune_own_events(%s)", (7 * 86400,)).fetchone()
        assert pruned == (p1_last,)
        conn.commit()
        h.act_as(conn, a, P1)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM vechat_events")  # only through the function
        conn.rollback()
    assert events_of(world, a, P1) == []
    assert events_of(world, a, C1) == c1_before
    with world.admin() as admin:
        cursor = admin.execute(
            """SELECT last_seq, pruned_seq FROM vechat_event_cursors
               WHERE organisation_id = %s AND user_type = %s AND user_id = %s""",
            (a, P1.user_type, P1.user_id),
        ).fetchone()
    assert cursor == (p1_last, p1_last)


def test_prune_events_is_the_dbas_and_advances_every_cursor(
    fresh_database: FreshDatabase, postgres: TestPostgres
) -> None:
    database = fresh_database(migrated=True)
    with psycopg.connect(database.admin_url) as admin:
        seed = h.seed_organisation(admin, 5)
        admin.execute("UPDATE vechat_events SET created_at = now() - interval '2 hours'")
        total = admin.execute("SELECT count(*) FROM vechat_events").fetchone()
        admin.commit()
    with psycopg.connect(database.app_url) as app:
        h.act_as(app, seed.organisation_id, P1)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT vechat.prune_events(60)")
    with psycopg.connect(database.admin_url) as admin:
        assert admin.execute("SELECT vechat.prune_events(3600)").fetchone() == total
        assert admin.execute("SELECT count(*) FROM vechat_events").fetchone() == (0,)
        assert admin.execute(
            "SELECT count(*) FROM vechat_event_cursors WHERE pruned_seq <> last_seq"
        ).fetchone() == (0,)


def test_leases_bring_users_online_and_offline_and_ring_ids_only(world: World) -> None:
    b = world.seeds[1].organisation_id
    users = json.dumps([["client", C2.user_id, 2]])
    with world.app() as listener:
        listener.autocommit = True
        listener.execute("LISTEN vechat_presence")
        with world.app() as conn:
            h.act_as(conn, b, P2)
            assert conn.execute(
                "SELECT * FROM vechat.set_leases('test-server', 45, %s)", (users,)
            ).fetchall() == [("client", C2.user_id, "online")]
            conn.commit()
            h.act_as(conn, b, P2)
            assert conn.execute(
                """SELECT status FROM vechat.presence_view
                   WHERE user_type = 'client' AND user_id = %s""",
                (C2.user_id,),
            ).fetchone() == ("online",)
            renewal = conn.execute(
                "SELECT change FROM vechat.set_leases('test-server', 45, %s)", (users,)
            ).fetchall()
            assert renewal == [(None,)]
            gone = json.dumps([["client", C2.user_id, 0]])
            assert conn.execute(
                "SELECT change FROM vechat.set_leases('test-server', 45, %s)", (gone,)
            ).fetchall() == [("offline",)]
            row = conn.execute(
                """SELECT status, last_seen IS NOT NULL FROM vechat.presence_view
                   WHERE user_type = 'client' AND user_id = %s""",
                (C2.user_id,),
            ).fetchone()
            assert row == ("offline", True)
            conn.commit()
        notices = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=2)]
    assert notices == [{"o": b, "u": ["client", C2.user_id]}] * 2


def test_anyone_of_the_organisation_sweeps_expired_leases_and_rings_offline(world: World) -> None:
    a, b = (s.organisation_id for s in world.seeds)
    with world.admin() as admin:
        for organisation_id in (a, b):
            admin.execute(
                """INSERT INTO vechat_presence_connections
                       (organisation_id, user_id, user_type, server_id, expires_at)
                   VALUES (%s, %s, 'client', 'killed', now() - interval '1 second')""",
                (organisation_id, C2.user_id),
            )
        admin.commit()
    with world.app() as listener:
        listener.autocommit = True
        listener.execute("LISTEN vechat_presence")
        with world.app() as conn:
            h.act_as(conn, a, P2)
            swept = conn.execute("SELECT * FROM vechat.sweep_leases()").fetchall()
            conn.commit()
        notices = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=1)]
    assert swept == [("client", C2.user_id)]
    assert notices == [{"o": a, "u": ["client", C2.user_id]}]
    with world.admin() as admin:
        left = admin.execute(
            """SELECT organisation_id FROM vechat_presence_connections
               WHERE server_id IN ('killed', 'dead') ORDER BY 1"""
        ).fetchall()
        # Organisation b's dead lease is b's to sweep; the seed's long-dead lease of P1 in a
        # went with this sweep.
        assert left == [(b,), (b,)]
        admin.execute("DELETE FROM vechat_presence_connections WHERE server_id = 'killed'")
        admin.commit()
