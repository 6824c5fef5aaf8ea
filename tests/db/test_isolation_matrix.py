"""The isolation matrix: every tenant table x SELECT/INSERT/UPDATE/DELETE x actor, generated.

Two organisations, A and B, are seeded identically (`seed.seed_organisation`) as the
superuser. Each case then acts as `vechat_app` and aims at organisation A's rows only
(`WHERE organisation_id = A`, or a new row of A), so what it sees or changes is exactly what the
policies let that actor reach in A. `EXPECTED` is written from the policy comments in
db/policies/*.sql, not from running the code.

Each case runs in one transaction that is rolled back, on a superuser connection that switches to
the application role with `SET LOCAL ROLE vechat_app`: grants and row-level security follow the
current role, so this is exactly what the login role gets (a cross-check below logs in as
vechat_app), and it lets an INSERT case first make room for the row it inserts (a user has one
settings row, say) inside the same rolled-back transaction. The no-context actor uses a connection
on which no `vechat.*` setting was ever set (unset reads as NULL), the empty-context actor one on
which every setting is '' (what a setting reads as after a reset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database
from tests.support.postgres import TestPostgres
from tests.support.seed import ADMIN, C1, C2, P1, P2, Seed, User

pytestmark = pytest.mark.db

DENIED = "42501"  # insufficient_privilege: no grant, or a row a policy's WITH CHECK refuses
D = DENIED

COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class Actor:
    """Who acts, relative to the rows' owner P1 of organisation A."""

    name: str
    organisation: str | None  # "A", "B", or None
    user: User | None
    empty: bool = False


ACTORS = (
    Actor("owner", "A", P1),  # owner of the rows, sender of the P1 -> C1 messages
    Actor("peer", "A", C1),  # P1's conversation partner, receiver of those messages
    Actor("other_staff", "A", P2),  # personnel of A in another conversation
    Actor("other_client", "A", C2),  # client of A in another conversation
    Actor("admin", "A", ADMIN),  # personnel of A whose token role is admin
    Actor("same_id_as_client", "A", User(P1.user_id, "client")),  # the owner's id, other type
    Actor("other_org", "B", P1),  # organisation B's user with the owner's very id and type
    Actor("other_org_admin", "B", ADMIN),  # an admin, but of organisation B
    Actor("no_context", None, None),
    Actor("empty_context", None, None, empty=True),
)

ALL_DENIED = (D,) * len(ACTORS)

# Per table and command, in ACTORS order: rows of organisation A the actor sees (SELECT) or
# changes (UPDATE/DELETE with WHERE organisation_id = A), 1 for a permitted INSERT of a new row of
# the owner in A, or DENIED (SQLSTATE 42501).
#   owner, peer, other_staff, other_client, admin, same_id_as_client, other_org,
#   other_org_admin, no_context, empty_context
EXPECTED: dict[str, dict[str, tuple[int | str, ...]]] = {
    "vechat_attachments": {
        # select_uploader_or_participant: P1 uploaded it, C1 receives the message carrying it.
        "SELECT": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        "INSERT": (1, D, D, D, D, D, D, D, D, D),  # insert_uploader: only as oneself
        "UPDATE": ALL_DENIED,  # no UPDATE grant: files are immutable
        "DELETE": (1, 0, 0, 0, 0, 0, 0, 0, 0, 0),  # delete_uploader
    },
    "vechat_contacts": {
        # select_visible: personnel read all 5 rows; a client reads personnel (3) and itself.
        "SELECT": (5, 4, 5, 4, 5, 3, 0, 0, 0, 0),
        "INSERT": (1, D, D, D, 1, D, D, D, D, D),  # insert_self_or_admin
        "UPDATE": (1, 1, 1, 1, 5, 0, 0, 0, 0, 0),  # update_self_or_admin
        "DELETE": (0, 0, 0, 0, 5, 0, 0, 0, 0, 0),  # delete_admin
    },
    "vechat_conversations": {
        "SELECT": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0),  # select_participant: each sees their one
        "INSERT": (1, D, D, 1, D, D, D, D, D, D),  # insert_participant: the new P1-C2 pair
        "UPDATE": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0),  # update_participant
        "DELETE": ALL_DENIED,  # no DELETE grant: "delete" is a per-user flag
    },
    "vechat_event_cursors": {
        "SELECT": (4, 4, 4, 4, 4, 4, 0, 0, 0, 0),  # select_organisation: numbers only
        "INSERT": ALL_DENIED,  # written only by vechat.emit (SECURITY DEFINER)
        "UPDATE": ALL_DENIED,
        "DELETE": ALL_DENIED,
    },
    "vechat_events": {
        "SELECT": (4, 4, 1, 1, 0, 0, 0, 0, 0, 0),  # select_recipient: one's own log
        "INSERT": ALL_DENIED,  # written only by the message triggers: no forged events
        "UPDATE": ALL_DENIED,
        "DELETE": ALL_DENIED,
    },
    "vechat_message_edits": {
        "SELECT": (
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ),  # select_participant: history of readable messages
        "INSERT": ALL_DENIED,  # written only by the edit trigger: no rewritten history
        "UPDATE": ALL_DENIED,
        "DELETE": ALL_DENIED,
    },
    "vechat_messages": {
        "SELECT": (3, 3, 1, 1, 0, 0, 0, 0, 0, 0),  # select_participant: sent or received
        "INSERT": (
            1,
            D,
            D,
            D,
            D,
            D,
            D,
            D,
            D,
            D,
        ),  # insert_sender: as oneself, into one's conversation
        "UPDATE": (3, 3, 1, 1, 0, 0, 0, 0, 0, 0),  # update_participant (columns: messages_guard)
        "DELETE": ALL_DENIED,  # no DELETE grant: deleting is a tombstone or a per-user flag
    },
    "vechat_presence": {
        "SELECT": (2, 2, 2, 2, 2, 2, 0, 0, 0, 0),  # select_organisation
        "INSERT": (1, D, D, D, D, D, D, D, D, D),  # insert_self
        "UPDATE": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),  # update_self
        "DELETE": ALL_DENIED,
    },
    "vechat_presence_connections": {
        "SELECT": (3, 3, 3, 3, 3, 3, 0, 0, 0, 0),  # select_organisation
        "INSERT": (1, D, D, D, D, D, D, D, D, D),  # insert_self
        "UPDATE": (2, 1, 0, 0, 0, 0, 0, 0, 0, 0),  # update_self
        # delete_self_or_expired: one's own leases, and anyone sweeps P1's expired one.
        "DELETE": (2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
    },
    "vechat_rate_limits": {
        "SELECT": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),  # all_owner
        "INSERT": (1, D, D, D, D, D, D, D, D, D),
        "UPDATE": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        "DELETE": ALL_DENIED,
    },
    "vechat_user_settings": {
        "SELECT": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),  # all_owner
        "INSERT": (1, D, D, D, D, D, D, D, D, D),
        "UPDATE": (1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        "DELETE": ALL_DENIED,
    },
}

# An UPDATE that changes nothing a guard trigger objects to, so the count is the policies' alone.
TOUCH = {
    "vechat_attachments": "file_name = file_name",
    "vechat_contacts": "display_name = display_name",
    "vechat_conversations": "is_muted_by_participant1 = is_muted_by_participant1",
    "vechat_event_cursors": "last_seq = last_seq",
    "vechat_events": "data = data",
    "vechat_message_edits": "previous_message = previous_message",
    "vechat_messages": "updated_at = updated_at",
    "vechat_presence": "status = status",
    "vechat_presence_connections": "sockets = sockets",
    "vechat_rate_limits": "hits = hits",
    "vechat_user_settings": "theme = theme",
}

CASES = [
    pytest.param(table, command, index, id=f"{table}-{command}-{actor.name}")
    for table in EXPECTED
    for command in COMMANDS
    for index, actor in enumerate(ACTORS)
]


@dataclass
class World:
    seeds: dict[str, Seed]  # "A", "B"
    conn: psycopg.Connection[Any]  # superuser; vechat.* settings used
    pristine: psycopg.Connection[Any]  # superuser; vechat.* settings never set
    database: str
    postgres: TestPostgres


@pytest.fixture(scope="module")
def world(migrated_database: Database, postgres: TestPostgres) -> Iterator[World]:
    database = migrated_database.name
    with h.organisations(postgres, database, 2) as (a, b):
        with h.admin_connect(postgres, database) as conn:
            seeds = {"A": h.seed_organisation(conn, a), "B": h.seed_organisation(conn, b)}
            conn.commit()
        with (
            h.admin_connect(postgres, database) as used,
            h.admin_connect(postgres, database) as pristine,
        ):
            # A setting once set reads as '' afterwards, never NULL again: mark this one used.
            h.set_context(used, h.context_settings(a, P1))
            used.rollback()
            yield World(seeds, used, pristine, database, postgres)


def statement(table: str, command: str) -> str:
    if command == "SELECT":
        return f"SELECT count(*) FROM {table} WHERE organisation_id = %(a)s"
    if command == "UPDATE":
        return f"UPDATE {table} SET {TOUCH[table]} WHERE organisation_id = %(a)s"
    if command == "DELETE":
        return f"DELETE FROM {table} WHERE organisation_id = %(a)s"
    return h.OWNER_ROW_SQL[table]


def connection_of(world: World, actor: Actor) -> psycopg.Connection[Any]:
    return world.pristine if actor.user is None and not actor.empty else world.conn


def become(world: World, conn: psycopg.Connection[Any], actor: Actor) -> None:
    """In the open transaction: switch to vechat_app and take the actor's context."""
    conn.execute("SET LOCAL ROLE vechat_app")
    seed = world.seeds[actor.organisation] if actor.organisation else None
    organisation = seed.organisation_id if seed else None
    h.set_context(conn, h.context_settings(organisation, actor.user, empty=actor.empty))
    if actor.user is None and not actor.empty:
        unset = conn.execute("SELECT current_setting('vechat.organisation_id', true)")
        assert unset.fetchone() == (None,), "the no-context connection was given a context"


def run_case(world: World, table: str, command: str, actor: Actor) -> int | str:
    """Rows seen or affected, or the SQLSTATE of the error; always rolled back."""
    seed = world.seeds["A"]
    params = {
        "a": seed.organisation_id,
        "conversation_id": seed.conversation_id,
        "message_id": seed.message_id,
    }
    conn = connection_of(world, actor)
    try:
        if command == "INSERT" and table in h.MAKE_ROOM_FOR_OWNER_SQL:
            conn.execute(h.MAKE_ROOM_FOR_OWNER_SQL[table], params)
        become(world, conn, actor)
        cur = conn.execute(statement(table, command), params)
        if command == "SELECT":
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
        return cur.rowcount
    except psycopg.Error as exc:
        return h.sqlstate_of(exc) or repr(exc)
    finally:
        conn.rollback()


def test_matrix_covers_exactly_the_tenant_tables_of_the_catalog(world: World) -> None:
    catalog = [r[0] for r in world.conn.execute(h.TENANT_TABLES_SQL).fetchall()]
    world.conn.rollback()
    assert catalog == sorted(h.TENANT_TABLES)
    assert sorted(EXPECTED) == catalog
    assert sorted(TOUCH) == catalog and sorted(h.OWNER_ROW_SQL) == catalog
    assert all(len(row) == len(ACTORS) for rows in EXPECTED.values() for row in rows.values())


def test_seed_holds_what_the_matrix_counts_on(world: World) -> None:
    """Every expected count is out of these totals; a changed seed must change the table too."""
    totals = {}
    for table in h.TENANT_TABLES:
        row = world.conn.execute(
            f"SELECT count(*) FROM {table} WHERE organisation_id = %s",
            (world.seeds["A"].organisation_id,),
        ).fetchone()
        assert row is not None
        totals[table] = row[0]
    world.conn.rollback()
    assert totals == {
        "vechat_attachments": 1,
        "vechat_contacts": 5,
        "vechat_conversations": 2,
        "vechat_event_cursors": 4,
        "vechat_events": 10,
        "vechat_message_edits": 1,
        "vechat_messages": 4,
        "vechat_presence": 2,
        "vechat_presence_connections": 3,
        "vechat_rate_limits": 2,
        "vechat_user_settings": 2,
    }


@pytest.mark.parametrize(("table", "command", "actor_index"), CASES)
def test_isolation(world: World, table: str, command: str, actor_index: int) -> None:
    actor = ACTORS[actor_index]
    expected = EXPECTED[table][command][actor_index]
    assert run_case(world, table, command, actor) == expected


@pytest.mark.parametrize("index", range(len(ACTORS)), ids=[a.name for a in ACTORS])
def test_presence_view_shows_what_presence_rows_show(world: World, index: int) -> None:
    """vechat.presence_view is security_invoker: the caller's policies apply through it."""
    actor = ACTORS[index]
    conn = connection_of(world, actor)
    a = world.seeds["A"].organisation_id
    try:
        become(world, conn, actor)
        rows = conn.execute(
            "SELECT user_id, status FROM vechat.presence_view WHERE organisation_id = %s "
            "ORDER BY user_id",
            (a,),
        ).fetchall()
    finally:
        conn.rollback()
    expected = EXPECTED["vechat_presence"]["SELECT"][index]
    assert len(rows) == expected
    if expected:
        assert rows == [(P1.user_id, "online"), (C1.user_id, "online")]  # both hold a live lease


def test_login_role_sees_what_set_role_sees(world: World) -> None:
    """The matrix's `SET LOCAL ROLE vechat_app` is what a vechat_app login gets."""
    a = world.seeds["A"].organisation_id
    with h.app_connect(world.postgres, world.database) as app:
        for actor in ACTORS[:-2]:  # all but the two without a context
            organisation = world.seeds[actor.organisation or "A"].organisation_id
            h.act_as(app, organisation, actor.user)
            for table, rows in EXPECTED.items():
                count = app.execute(
                    f"SELECT count(*) FROM {table} WHERE organisation_id = %s", (a,)
                ).fetchone()
                assert count == (rows["SELECT"][ACTORS.index(actor)],), (table, actor.name)
            app.rollback()
