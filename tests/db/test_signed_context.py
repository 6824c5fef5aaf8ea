"""The signed tenant context, from psql as the application role: a setting is no context, a token
copied from another connection, expired, reused, forged or of a retired key is refused, a valid
one works; and ids counted per organisation carry nothing of another's activity."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database, FreshDatabase
from tests.support.seed import C1, C2, P1, P2

pytestmark = pytest.mark.db

REFUSED = psycopg.errors.InvalidAuthorizationSpecification


@pytest.fixture(scope="module")
def world(migrated_database: Database) -> Iterator[tuple[Database, list[h.Seed]]]:
    a, b = h.new_organisation_ids(2)
    with psycopg.connect(migrated_database.admin_url) as conn:
        seeds = [h.seed_organisation(conn, a), h.seed_organisation(conn, b)]
        conn.commit()
    yield migrated_database, seeds
    h.purge_organisations(migrated_database.admin_url, [a, b])


def tenant_tables(db: Database) -> list[str]:
    with psycopg.connect(db.admin_url) as conn:
        return [r[0] for r in conn.execute(h.TENANT_TABLES_SQL).fetchall()]


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("which", [0, 1])
def test_set_config_as_vechat_app_sees_no_row_of_any_table_and_writes_nothing(
    world: tuple[Database, list[h.Seed]], which: int
) -> None:
    db, seeds = world
    seed = seeds[which]
    tables = tenant_tables(db)
    with psycopg.connect(db.app_url) as conn:  # a vechat_app login, as psql would be
        for user in (P1, C1, h.ADMIN):
            conn.execute(
                "SELECT set_config('vechat.organisation_id', %s, true), "
                "set_config('vechat.user_id', %s, true), set_config('vechat.user_type', %s, true),"
                " set_config('vechat.role', %s, true)",
                (str(seed.organisation_id), str(user.user_id), user.user_type, user.role or ""),
            )
            for table in tables:
                assert count(conn, table) == 0, table
                for sql in (f"UPDATE public.{table} SET organisation_id = organisation_id",
                            f"DELETE FROM public.{table}"):
                    try:
                        assert conn.execute(sql).rowcount == 0, (table, sql)
                    except psycopg.errors.InsufficientPrivilege:
                        conn.rollback()  # no grant for it at all
                        conn.execute(
                            "SELECT set_config('vechat.organisation_id', %s, true), "
                            "set_config('vechat.user_id', %s, true), "
                            "set_config('vechat.user_type', %s, true)",
                            (str(seed.organisation_id), str(user.user_id), user.user_type),
                        )
            conn.rollback()
        for sql in h.OWNER_ROW_SQL.values():
            conn.execute(
                "SELECT set_config('vechat.organisation_id', %s, true), "
                "set_config('vechat.user_id', '11', true), "
                "set_config('vechat.user_type', 'personnel', true)",
                (str(seed.organisation_id),),
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql, {"a": seed.organisation_id, "conversation_id":
                                   seed.conversation_id, "message_id": seed.message_id})
            conn.rollback()
        assert conn.execute("SELECT vechat.current_organisation_id()").fetchone() == (None,)


def test_a_context_copied_from_another_connection_is_refused(
    world: tuple[Database, list[h.Seed]],
) -> None:
    db, seeds = world
    o = seeds[0].organisation_id
    with psycopg.connect(db.app_url) as victim, psycopg.connect(db.app_url) as thief:
        token = h.signed_token(victim, o, P1)
        victim.execute(f"SELECT vechat.enter('{token}')")  # literal: pg_stat_activity shows it
        row = thief.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", (victim.info.backend_pid,)
        ).fetchone()
        assert row is not None
        stolen = re.search(r"vechat\.enter\('([^']+)'\)", row[0])
        assert stolen, row[0]
        assert count(victim, "vechat_messages") > 0  # the victim's own context works
        with pytest.raises(REFUSED, match="signed for another connection"):
            thief.execute("SELECT vechat.enter(%s)", (stolen[1],))
        thief.rollback()
        assert count(thief, "vechat_messages") == 0


def test_the_context_tuple_id_is_a_hint_that_cannot_borrow_another_backends_context(
    world: tuple[Database, list[h.Seed]],
) -> None:
    """vechat.context finds its row by the tuple id `vechat.enter` leaves in a setting; set by
    hand to another backend's row (or this backend's row of an earlier transaction), it finds
    nothing: the row must still be this backend's and this transaction's."""
    db, seeds = world
    o = seeds[0].organisation_id
    with psycopg.connect(db.app_url) as victim, psycopg.connect(db.app_url) as thief, \
            psycopg.connect(db.admin_url) as admin:
        victim.execute("SELECT vechat.enter(%s)", (h.signed_token(victim, o, P1),))
        assert count(victim, "vechat_messages") > 0
        tid = victim.execute("SELECT current_setting('vechat.context_tid')").fetchone()
        assert tid is not None and tid[0]
        # Every row of the table and the victim's current one as the thief's hint: nothing.
        tids = {r[0] for r in admin.execute(
            "SELECT ctid::text FROM vechat.session_contexts").fetchall()} | {tid[0]}
        for forged in sorted(tids):
            thief.execute("SELECT set_config('vechat.context_tid', %s, true)", (forged,))
            assert count(thief, "vechat_messages") == 0
            assert thief.execute("SELECT vechat.current_organisation_id()").fetchone() == (None,)
        thief.rollback()
        victim.commit()
        # The victim's own row of a finished transaction, its setting put back by hand: nothing.
        victim.execute("SELECT set_config('vechat.context_tid', %s, true)", (tid[0],))
        assert count(victim, "vechat_messages") == 0
        victim.rollback()


def test_a_backend_s_own_row_speeds_up_entering_but_never_vouches_for_another_backend(
    world: tuple[Database, list[h.Seed]],
) -> None:
    """`vechat.enter` updates the backend's row in one statement when the row already holds the
    backend start the token was signed for and the session key it gave this backend; a token
    naming another start takes the full path, which reads the real start and refuses it — also
    when the row is one an earlier backend with this pid left (its start, its key)."""
    from vechat_rls.db import context

    db, seeds = world
    o = seeds[0].organisation_id
    with psycopg.connect(db.app_url) as conn, psycopg.connect(db.admin_url) as admin:
        pid, start = h.backend_of(conn)
        identity = h.identity_of(o, P1)
        keys = []
        for _ in range(3):  # the first one writes the row, the next ones take the short path
            conn.execute("SELECT vechat.enter(%s)", (context.sign(identity, pid, start),))
            assert count(conn, "vechat_messages") > 0
            keys.append(conn.execute("SELECT current_setting('vechat.session_key')").fetchone())
            conn.commit()
        assert keys[0] == keys[1] == keys[2]  # the full path gives a new key each time
        with pytest.raises(REFUSED, match="signed for another connection"):
            conn.execute("SELECT vechat.enter(%s)", (context.sign(identity, pid, start - 1),))
        conn.rollback()
        # The row as a dead backend with this pid would have left it, and a token signed for
        # that backend: refused, and the row is not taken for this backend's.
        admin.execute("UPDATE vechat.session_contexts SET backend_start = backend_start"
                      " - interval '1 second', session_key = 'the earlier backend''s'"
                      " WHERE pid = %s", (pid,))
        admin.commit()
        earlier = start - 1_000_000
        with pytest.raises(REFUSED, match="signed for another connection"):
            conn.execute("SELECT vechat.enter(%s)", (context.sign(identity, pid, earlier),))
        conn.rollback()
        assert count(conn, "vechat_messages") == 0
        conn.execute("SELECT vechat.enter(%s)", (context.sign(identity, pid, start),))
        assert count(conn, "vechat_messages") > 0
        conn.commit()
        # A key changed by hand only sends the next token through the full check.
        conn.execute("SELECT set_config('vechat.session_key', 'guess', false)")
        conn.execute("SELECT vechat.enter(%s)", (context.sign(identity, pid, start),))
        assert count(conn, "vechat_messages") > 0


def test_an_expired_a_reused_a_forged_and_a_retired_keys_context_are_refused(
    fresh_database: FreshDatabase,
) -> None:
    db = fresh_database(migrated=True)
    with psycopg.connect(db.admin_url) as admin:
        seed = h.seed_organisation(admin, 3)
        admin.commit()
    o = seed.organisation_id
    with psycopg.connect(db.app_url) as conn:
        with pytest.raises(REFUSED, match="expired"):
            conn.execute("SELECT vechat.enter(%s)", (h.signed_token(conn, o, P1, ttl_s=-5),))
        conn.rollback()
        # A valid one works ...
        token = h.signed_token(conn, o, P1)
        conn.execute("SELECT vechat.enter(%s)", (token,))
        assert count(conn, "vechat_messages") > 0
        conn.commit()
        # ... once: entered again (or an older one), it is refused.
        with pytest.raises(REFUSED, match="already used"):
            conn.execute("SELECT vechat.enter(%s)", (token,))
        conn.rollback()
        fields = h.signed_token(conn, o, P1).split("|")
        for tampered in (
            [*fields[:2], str(o + 1), *fields[3:]],  # another organisation, same signature
            [*fields[:4], "client", *fields[5:]],
            [*fields[:5], "admin", *fields[6:]],
            [*fields[:10], "0" * 64],
            [fields[0], "nokey", *fields[2:]],
        ):
            with pytest.raises(REFUSED):
                conn.execute("SELECT vechat.enter(%s)", ("|".join(tampered),))
            conn.rollback()
        assert count(conn, "vechat_messages") == 0
    # Rotation: a second key is valid with the first; the first retired, its tokens are refused.
    from vechat_rls.db import context

    new = context.new_key("next")
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        admin.execute("SELECT vechat.add_context_key(%s, %s)", (new.key_id, new.secret))
    with psycopg.connect(db.app_url) as conn:
        for key in (None, new):
            options = {"key": key} if key else {}
            conn.execute("SELECT vechat.enter(%s)", (h.signed_token(conn, o, P1, **options),))
            assert count(conn, "vechat_messages") > 0
            conn.commit()
        with psycopg.connect(db.admin_url, autocommit=True) as admin:
            admin.execute("SELECT vechat.retire_context_key('test')")
        with pytest.raises(REFUSED, match="bad signature or unknown key"):
            conn.execute("SELECT vechat.enter(%s)", (h.signed_token(conn, o, P1),))
        conn.rollback()
        conn.execute("SELECT vechat.enter(%s)", (h.signed_token(conn, o, P1, key=new),))
        assert count(conn, "vechat_messages") > 0
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        admin.execute("UPDATE vechat.context_keys SET retired_at = NULL WHERE key_id = 'test'")


def test_the_app_role_cannot_act_as_anyone_or_read_the_keys(
    world: tuple[Database, list[h.Seed]],
) -> None:
    db, seeds = world
    with psycopg.connect(db.app_url, autocommit=True) as conn:
        for sql in (
            f"SELECT vechat.act_as({seeds[1].organisation_id}, 11, 'personnel')",
            "SELECT * FROM vechat.context_keys",
            "SELECT vechat.context_mac('test', 'x')",
            "SELECT vechat.doorbell('vechat_events')",
            "SELECT * FROM vechat.id_sequences",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def _script(conn: psycopg.Connection[Any], o: int, step: int) -> list[tuple[str, int]]:
    """Organisation o's writes, step `step`: what it receives back as ids."""
    got: list[tuple[str, int]] = []
    with conn.transaction():
        h.act_as(conn, o, P1)
        peer = h.User(100 + step, "client")
        conversation = h.create_conversation(conn, o, P1, peer)
        got.append(("conversation", conversation))
        attachment = h.insert_attachment(conn, o, P1)
        got.append(("attachment", attachment))
        message = h.insert_message(conn, o, conversation, P1, peer, f"m{step}")
        got.append(("message", message))
        conn.execute(
            "UPDATE vechat_messages SET message = %s WHERE organisation_id = %s AND id = %s",
            (f"m{step} edited", o, message),
        )
        edit = conn.execute(
            "SELECT max(id) FROM vechat_message_edits WHERE organisation_id = %s", (o,)
        ).fetchone()
        assert edit is not None
        got.append(("edit", int(edit[0])))
    return got


def _run(db: Database, a: int, b: int, busy: bool) -> list[tuple[str, int]]:
    """A's script; with `busy`, B writes the same kinds of rows before, between and during."""
    ids: list[tuple[str, int]] = []
    stop = threading.Event()

    def b_writes() -> None:
        with psycopg.connect(db.app_url) as conn:
            step = 0
            while not stop.is_set():
                _script(conn, b, 1000 + step)
                step += 1

    worker = threading.Thread(target=b_writes) if busy else None
    with psycopg.connect(db.app_url) as conn:
        if busy:
            _script(conn, b, 999)
        if worker:
            worker.start()
        try:
            for step in range(5):
                ids += _script(conn, a, step)
                if busy:
                    _script(conn, b, 500 + step)  # interleaved, on top of the thread's
        finally:
            stop.set()
            if worker:
                worker.join()
    return ids


def test_organisation_a_receives_the_same_ids_whether_b_is_idle_or_busy(
    fresh_database: FreshDatabase,
) -> None:
    """Per-organisation numbering: A's ids are a function of A's own writes. Run on two fresh
    databases with the same organisation ids, B idle in one and writing between and during every
    step of A's in the other, A's ids are identical — there is no count of B in them."""
    a, b = 7, 8
    idle, busy = fresh_database(migrated=True), fresh_database(migrated=True)
    ids_idle = _run(idle, a, b, busy=False)
    ids_busy = _run(busy, a, b, busy=True)
    assert ids_idle == ids_busy
    with psycopg.connect(busy.admin_url) as conn:
        b_messages = conn.execute(
            "SELECT count(*) FROM vechat_messages WHERE organisation_id = %s", (b,)
        ).fetchone()
    assert b_messages is not None and b_messages[0] > 5  # B was busy indeed
    # Counted from organisation_id * 2^32: unique across organisations, JavaScript-safe.
    assert all(a * 2**32 < i < (a + 1) * 2**32 < 2**53 for _, i in ids_idle)
    messages = [i for kind, i in ids_idle if kind == "message"]
    assert messages == sorted(messages) == list(range(messages[0], messages[0] + 5))
    _ = (P2, C2)  # the seed's other users are not part of this script
