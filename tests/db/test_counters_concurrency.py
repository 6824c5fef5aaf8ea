"""Counters, the event log and the message column rules, maintained by the database under load.

Unread counters, the last message, un-archiving, edit history, tombstones and the per-recipient
event log are all written by the message triggers in the writing transaction
(db/schema/20_message_triggers.sql). These tests drive them as `vechat_app`, concurrently where
it matters, and compare the result with a count from scratch: `vechat.recount_unread` (run as the
superuser: it returns how many conversations were wrong) and a count of the messages themselves.
Each test works in organisations of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import seed as h
from tests.support.fixtures import Database
from tests.support.postgres import TestPostgres
from tests.support.seed import C1, C2, P1, P2, User
from vechat_rls.chat.conversations import read_conversation
from vechat_rls.db import create_pool, tenant
from vechat_rls.identity import Identity

pytestmark = pytest.mark.db

# P1 (11, personnel) sorts before C1 (12, client): P1 is participant 1 of their conversation.
UNREAD_SQL = """
SELECT c.unread_count_participant1, c.unread_count_participant2,
       (SELECT count(*) FROM vechat_messages m
        WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
          AND (m.receiver_id, m.receiver_type) = (c.participant1_id, c.participant1_type)
          AND NOT m.is_read AND m.deleted_at IS NULL AND NOT m.is_deleted_by_receiver),
       (SELECT count(*) FROM vechat_messages m
        WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
          AND (m.receiver_id, m.receiver_type) = (c.participant2_id, c.participant2_type)
          AND NOT m.is_read AND m.deleted_at IS NULL AND NOT m.is_deleted_by_receiver)
FROM vechat_conversations c WHERE c.organisation_id = %s AND c.id = %s
"""

SEND_SQL = """
INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,
                             receiver_id, receiver_type, message)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
"""


@dataclass
class Env:
    postgres: TestPostgres
    database: str
    admin: psycopg.Connection[Any]  # superuser, autocommit
    app_url: str
    organisations: list[int] = field(default_factory=list)

    def new_organisation(self) -> int:
        (o,) = h.new_organisation_ids()
        self.organisations.append(o)
        return o

    def conversation(self, o: int, a: User = P1, b: User = C1) -> int:
        with self.admin.transaction():
            return h.create_conversation(self.admin, o, a, b)

    def app(self) -> psycopg.Connection[Any]:
        return h.app_connect(self.postgres, self.database)


@pytest.fixture(scope="module")
def env(migrated_database: Database, postgres: TestPostgres) -> Iterator[Env]:
    database = migrated_database.name
    with h.admin_connect(postgres, database, autocommit=True) as admin:
        e = Env(postgres, database, admin, postgres.app_url(database, password=h.APP_PASSWORD))
        try:
            yield e
        finally:
            h.purge_organisations(migrated_database.admin_url, e.organisations)


# --------------------------------------------------------------------------------------------
# Checks, as the superuser


def unread(env: Env, o: int, conversation: int) -> tuple[int, int, int, int]:
    """(counter 1, counter 2, counted 1, counted 2)."""
    row = env.admin.execute(UNREAD_SQL, (o, conversation)).fetchone()
    assert row is not None
    return row


def assert_counters_exact(env: Env, o: int, conversation: int) -> tuple[int, int]:
    kept1, kept2, counted1, counted2 = unread(env, o, conversation)
    assert (kept1, kept2) == (counted1, counted2)
    row = env.admin.execute("SELECT vechat.recount_unread(%s)", (o,)).fetchone()
    assert row == (0,), "recount_unread found (and fixed) wrong counters"
    return kept1, kept2


def assert_event_log_gapless(env: Env, o: int) -> dict[tuple[int, str], int]:
    """Every recipient's seq is exactly 1..N and their cursor says N; returns N per recipient."""
    rows = env.admin.execute(
        """SELECT e.recipient_id, e.recipient_type, array_agg(e.seq ORDER BY e.seq), c.last_seq
           FROM vechat_events e
           JOIN vechat_event_cursors c ON (c.organisation_id, c.user_id, c.user_type)
                                        = (e.organisation_id, e.recipient_id, e.recipient_type)
           WHERE e.organisation_id = %s
           GROUP BY 1, 2, c.last_seq""",
        (o,),
    ).fetchall()
    lengths = {}
    for user_id, user_type, seqs, last_seq in rows:
        assert seqs == list(range(1, len(seqs) + 1)), (user_id, user_type)
        assert last_seq == len(seqs), (user_id, user_type)
        lengths[(user_id, user_type)] = len(seqs)
    return lengths


def events(env: Env, o: int, user: User) -> list[tuple[str, int | None, Any]]:
    return env.admin.execute(
        """SELECT event_type, message_id, data FROM vechat_events
           WHERE organisation_id = %s AND recipient_id = %s AND recipient_type = %s ORDER BY seq""",
        (o, user.user_id, user.user_type),
    ).fetchall()


def message_row(env: Env, o: int, message: int) -> dict[str, Any]:
    cur = env.admin.execute(
        "SELECT * FROM vechat_messages WHERE organisation_id = %s AND id = %s", (o, message)
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([d.name for d in cur.description], row, strict=True))


def conversation_row(env: Env, o: int, conversation: int) -> dict[str, Any]:
    cur = env.admin.execute(
        "SELECT * FROM vechat_conversations WHERE organisation_id = %s AND id = %s",
        (o, conversation),
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([d.name for d in cur.description], row, strict=True))


# --------------------------------------------------------------------------------------------
# What users do, as vechat_app (one transaction each)


def act(conn: psycopg.Connection[Any], o: int, user: User, sql: str, params: Any) -> int:
    """Run one statement as `user` and commit; returns the rows it affected."""
    try:
        h.act_as(conn, o, user)
        count = conn.execute(sql, params).rowcount
        conn.commit()
        return count
    except BaseException:
        conn.rollback()
        raise


def send(conn: psycopg.Connection[Any], o: int, conv: int, sender: User, receiver: User,
         text: str = "hi") -> int:  # fmt: skip
    try:
        message = h.insert_message(conn, o, conv, sender, receiver, text)
        conn.commit()
        return message
    except BaseException:
        conn.rollback()
        raise


def read_up_to(conn: psycopg.Connection[Any], o: int, conv: int, reader: User, up_to: int) -> int:
    return act(
        conn,
        o,
        reader,
        """UPDATE vechat_messages SET is_read = true
           WHERE organisation_id = %s AND conversation_id = %s AND receiver_id = %s
             AND receiver_type = %s AND NOT is_read AND id <= %s""",
        (o, conv, reader.user_id, reader.user_type, up_to),
    )


def delete_for_me(conn: psycopg.Connection[Any], o: int, message: int, user: User,
                  as_sender: bool) -> int:  # fmt: skip
    column = "is_deleted_by_sender" if as_sender else "is_deleted_by_receiver"
    return act(
        conn,
        o,
        user,
        f"UPDATE vechat_messages SET {column} = true WHERE organisation_id = %s AND id = %s",
        (o, message),
    )


def delete_for_everyone(conn: psycopg.Connection[Any], o: int, message: int, sender: User) -> int:
    return act(
        conn,
        o,
        sender,
        """UPDATE vechat_messages SET deleted_at = now()
           WHERE organisation_id = %s AND id = %s AND deleted_at IS NULL""",
        (o, message),
    )


def edit(conn: psycopg.Connection[Any], o: int, message: int, sender: User, text: str) -> int:
    return act(
        conn,
        o,
        sender,
        "UPDATE vechat_messages SET message = %s WHERE organisation_id = %s AND id = %s",
        (text, o, message),
    )


def identity(o: int, user: User) -> Identity:
    return Identity(organisation_id=o, user_id=user.user_id, user_type=user.user_type)  # type: ignore[arg-type]


async def send_async(pool: Any, o: int, conv: int, sender: User, receiver: User) -> int:
    async with tenant(pool, identity(o, sender)) as conn:
        message: int = await conn.fetchval(
            SEND_SQL,
            o,
            conv,
            sender.user_id,
            sender.user_type,
            receiver.user_id,
            receiver.user_type,
            "hi",
        )
        return message


# --------------------------------------------------------------------------------------------
# Concurrency


async def test_32_concurrent_senders_in_both_directions_keep_counts_and_sequences_exact(
    env: Env,
) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    senders, sends_each = 32, 10
    pool = await create_pool(env.app_url, max_size=senders)
    try:
        # All connections first, so the sends really overlap.
        conns = [await pool.acquire() for _ in range(senders)]
        for conn in conns:
            await pool.release(conn)

        async def sender(i: int) -> None:
            me, peer = (P1, C1) if i % 2 == 0 else (C1, P1)
            for _ in range(sends_each):
                await send_async(pool, o, conv, me, peer)

        started = time.monotonic()
        await asyncio.gather(*(sender(i) for i in range(senders)))
        elapsed = time.monotonic() - started
    finally:
        await pool.close()

    total = senders * sends_each
    assert assert_counters_exact(env, o, conv) == (total // 2, total // 2)
    assert assert_event_log_gapless(env, o) == {
        (P1.user_id, P1.user_type): total,
        (C1.user_id, C1.user_type): total,
    }
    conversation = conversation_row(env, o, conv)
    newest = env.admin.execute(
        "SELECT max(id) FROM vechat_messages WHERE organisation_id = %s", (o,)
    ).fetchone()
    assert newest == (conversation["last_message_id"],)
    assert elapsed < 20, f"{total} sends took {elapsed:.1f} s: senders queue far too long"


async def test_two_tabs_marking_the_same_messages_read_lock_them_in_id_order(env: Env) -> None:
    """The API's read (POST /conversations/{id}/read) locks the messages in id order, whatever
    order its plan reads them in. Here the plan reads the heap, where an edited message's new
    version lies after a later message, while another tab of the same user locks them in id order.
    Locking in the order read, the read held `second` and waited for `first`, the other tab
    waited for `second`: deadlock (40P01, seen in a CI run of the test below)."""
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.admin.transaction():
        first = h.insert_message(env.admin, o, conv, P1, C1, "first")
        second = h.insert_message(env.admin, o, conv, P1, C1, "second")
        env.admin.execute(
            "UPDATE vechat_messages SET message = 'first, edited' WHERE organisation_id = %s "
            "AND id = %s",
            (o, first),
        )
    heap_order = env.admin.execute(
        "SELECT id FROM vechat_messages WHERE organisation_id = %s ORDER BY ctid", (o,)
    ).fetchall()
    assert heap_order == [(second,), (first,)]
    lock = (
        "SELECT 1 FROM vechat_messages WHERE organisation_id = $1 AND id = $2 FOR NO KEY UPDATE"
    )
    pool = await create_pool(env.app_url, max_size=2)
    try:

        async def this_tab() -> int | None:
            async with tenant(pool, identity(o, C1)) as conn:
                # A plan that reads the heap, in page order.
                await conn.execute("SET LOCAL enable_indexscan = off")
                await conn.execute("SET LOCAL enable_bitmapscan = off")
                return await read_conversation(conn, conv)

        async with tenant(pool, identity(o, C1)) as other_tab:
            await other_tab.execute(lock, o, first)
            reading = asyncio.create_task(this_tab())
            await asyncio.sleep(0.5)  # it waits for `first` now (or holds `second`)
            await other_tab.execute(lock, o, second)
            await other_tab.execute(
                "UPDATE vechat_messages SET is_read = true WHERE organisation_id = $1 "
                "AND id = ANY ($2::bigint[])",
                o,
                [first, second],
            )
        marked = await asyncio.wait_for(reading, 10)
    finally:
        await pool.close()
    assert marked == 0  # the other tab read both; rows changed meanwhile were checked again
    assert_counters_exact(env, o, conv)


async def test_concurrent_reads_sends_and_deletes_keep_counters_equal_to_recount(
    env: Env,
) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    pool = await create_pool(env.app_url, max_size=14)
    rng = random.Random(7)
    deadlocks: list[str] = []

    async def guarded(coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == "40P01":
                deadlocks.append(str(exc))
            else:
                raise

    async def sender(me: User, peer: User) -> None:
        for _ in range(15):
            await guarded(send_async(pool, o, conv, me, peer))

    async def update(me: User, sql: str, *args: Any) -> None:
        async def run() -> None:
            async with tenant(pool, identity(o, me)) as conn:
                await conn.execute(sql, *args)

        await guarded(run())

    async def reader(me: User) -> None:
        # The API's own read (POST /conversations/{id}/read), up to a message near the newest.
        async def read() -> None:
            async with tenant(pool, identity(o, me)) as conn:
                newest = await conn.fetchval(
                    "SELECT max(id) FROM vechat_messages WHERE organisation_id = $1 "
                    "AND conversation_id = $2",
                    o,
                    conv,
                )
                if newest is not None:
                    await read_conversation(conn, conv, newest - rng.randrange(3))

        for _ in range(15):
            await guarded(read())
            await asyncio.sleep(0.005)

    async def deleter(me: User, column: str, mine: bool) -> None:
        who = "sender" if mine else "receiver"
        extra = "AND deleted_at IS NULL" if column == "deleted_at" else f"AND NOT {column}"
        value = "now()" if column == "deleted_at" else "true"
        for _ in range(10):
            await update(
                me,
                f"""UPDATE vechat_messages SET {column} = {value}
                    WHERE organisation_id = $1 AND id = (
                        SELECT id FROM vechat_messages
                        WHERE organisation_id = $1 AND conversation_id = $2
                          AND {who}_id = $3 AND {who}_type = $4 {extra}
                        ORDER BY random() LIMIT 1)""",
                o,
                conv,
                me.user_id,
                me.user_type,
            )
            await asyncio.sleep(0.005)

    try:
        await asyncio.gather(
            *(sender(P1, C1) for _ in range(3)),
            *(sender(C1, P1) for _ in range(3)),
            *(reader(user) for user in (P1, P1, C1, C1)),  # two tabs each
            deleter(P1, "deleted_at", mine=True),  # for everyone
            deleter(C1, "is_deleted_by_receiver", mine=False),  # for me, as the receiver
            deleter(P1, "is_deleted_by_receiver", mine=False),
            deleter(C1, "is_deleted_by_sender", mine=True),  # for me, as the sender
        )
    finally:
        await pool.close()

    assert deadlocks == []
    assert_counters_exact(env, o, conv)
    assert_event_log_gapless(env, o)
    states = env.admin.execute(
        """SELECT count(*) FILTER (WHERE is_read), count(*) FILTER (WHERE deleted_at IS NOT NULL),
                  count(*) FILTER (WHERE is_deleted_by_receiver), count(*)
           FROM vechat_messages WHERE organisation_id = %s""",
        (o,),
    ).fetchone()
    assert states is not None and states[3] == 90
    assert all(n > 0 for n in states[:3]), f"the mix did not happen: {states}"


def wait_until_blocked(env: Env, conn: psycopg.Connection[Any], timeout: float = 10) -> None:
    """Return once `conn`'s backend waits for a lock."""
    pid = conn.info.backend_pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = env.admin.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row == ("Lock",):
            return
        time.sleep(0.01)
    raise AssertionError("the second sender never queued behind the first")


def test_rolled_back_send_leaves_no_gap_in_sequences(env: Env) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as first, env.app() as second:
        send(first, o, conv, P1, C1)
        # A send that is rolled back while another one waits behind it (on the conversation row).
        h.insert_message(first, o, conv, P1, C1, "never")
        waiting = threading.Thread(target=send, args=(second, o, conv, C1, P1))
        waiting.start()
        wait_until_blocked(env, second)
        first.rollback()
        waiting.join(timeout=10)
        assert not waiting.is_alive()
        send(first, o, conv, P1, C1)
    assert assert_event_log_gapless(env, o) == {
        (P1.user_id, P1.user_type): 3,
        (C1.user_id, C1.user_type): 3,
    }
    texts = env.admin.execute(
        "SELECT message FROM vechat_messages WHERE organisation_id = %s", (o,)
    ).fetchall()
    assert ("never",) not in texts and len(texts) == 3
    assert_counters_exact(env, o, conv)


# --------------------------------------------------------------------------------------------
# A random history keeps the counters exact (hypothesis)

USERS = {"p": P1, "c": C1}
OPERATIONS = st.one_of(
    st.tuples(st.just("send"), st.sampled_from("pc")),
    st.tuples(st.just("read"), st.sampled_from("pc"), st.integers(0, 30)),
    st.tuples(st.just("delete_for_me"), st.sampled_from("pc"), st.integers(0, 30)),
    st.tuples(st.just("delete_for_everyone"), st.integers(0, 30)),
    st.tuples(st.just("edit"), st.integers(0, 30)),
)


@dataclass
class Model:
    """What the counters should be, computed in Python from the operations."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    def unread(self, user: User) -> int:
        return sum(
            1
            for m in self.messages
            if m["receiver"] == user and not m["read"] and not m["deleted"] and not m["hidden_r"]
        )


@pytest.fixture(scope="module")
def hypothesis_conns(env: Env) -> Iterator[psycopg.Connection[Any]]:
    with env.app() as conn:
        yield conn


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=30))
def test_random_operations_keep_counters_equal_to_recount(
    env: Env, hypothesis_conns: psycopg.Connection[Any], operations: list[tuple[Any, ...]]
) -> None:
    conn = hypothesis_conns
    o = env.new_organisation()
    conv = env.conversation(o)
    model = Model()
    for op in operations:
        kind = op[0]
        if kind == "send":
            sender = USERS[op[1]]
            receiver = C1 if sender == P1 else P1
            message = send(conn, o, conv, sender, receiver, f"m{len(model.messages)}")
            model.messages.append(
                {
                    "id": message,
                    "sender": sender,
                    "receiver": receiver,
                    "read": False,
                    "deleted": False,
                    "hidden_r": False,
                }
            )
        elif not model.messages:
            continue
        elif kind == "read":
            reader = USERS[op[1]]
            up_to = model.messages[op[2] % len(model.messages)]["id"]
            read_up_to(conn, o, conv, reader, up_to)
            for m in model.messages:
                if m["receiver"] == reader and m["id"] <= up_to:
                    m["read"] = True
        else:
            m = model.messages[op[-1] % len(model.messages)]
            if kind == "delete_for_me":
                user = USERS[op[1]]
                delete_for_me(conn, o, m["id"], user, as_sender=user == m["sender"])
                if user == m["receiver"]:
                    m["hidden_r"] = True
            elif kind == "delete_for_everyone":
                assert delete_for_everyone(conn, o, m["id"], m["sender"]) == (not m["deleted"])
                m["deleted"] = True
            elif m["deleted"]:
                with pytest.raises(psycopg.errors.CheckViolation):
                    edit(conn, o, m["id"], m["sender"], "edited")
            else:
                assert edit(conn, o, m["id"], m["sender"], f"edited {op}") == 1
        kept = unread(env, o, conv)
        assert kept[:2] == kept[2:] == (model.unread(P1), model.unread(C1)), op
    assert_counters_exact(env, o, conv)
    assert_event_log_gapless(env, o)


# --------------------------------------------------------------------------------------------
# What the triggers write


def test_edits_keep_every_previous_version_readable_by_both_participants_only(
    env: Env,
) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as app:
        message = send(app, o, conv, P1, C1, "v1")
        edit(app, o, message, P1, "v2")
        edit(app, o, message, P1, "v3")
        history = {}
        for user in (P1, C1, P2):
            h.act_as(app, o, user)
            history[user] = app.execute(
                "SELECT previous_message FROM vechat_message_edits WHERE message_id = %s "
                "ORDER BY id",
                (message,),
            ).fetchall()
            app.rollback()
    assert history[P1] == history[C1] == [("v1",), ("v2",)]
    assert history[P2] == []
    row = message_row(env, o, message)
    assert (row["message"], row["is_edited"], row["original_message"]) == ("v3", True, "v1")
    assert row["edited_at"] is not None
    for user in (P1, C1):
        kinds = [kind for kind, message_id, _ in events(env, o, user) if message_id == message]
        assert kinds == ["message.created", "message.updated", "message.updated"]


def test_delete_for_everyone_leaves_a_tombstone_without_content_or_history(env: Env) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as app:
        message = send(app, o, conv, P1, C1, "secret words")
        edit(app, o, message, P1, "more secret words")
        h.act_as(app, o, P1)
        attachment = h.insert_attachment(app, o, P1)
        file_message = h.insert_message(
            app, o, conv, P1, C1, None, message_type="file", attachment_id=attachment,
            file_name="a.pdf", file_size=6, file_type="application/pdf",
        )  # fmt: skip
        app.commit()
        assert unread(env, o, conv)[1] == 2
        for m in (message, file_message):
            assert delete_for_everyone(app, o, m, P1) == 1
    for m in (message, file_message):
        row = message_row(env, o, m)
        assert row["deleted_at"] is not None
        content = ("message", "original_message", "attachment_id", "file_name", "file_size")
        assert [row[c] for c in content] == [None] * len(content), m
        assert row["search_vector"] == ""
        for user in (P1, C1):
            kinds = [kind for kind, message_id, _ in events(env, o, user) if message_id == m]
            assert kinds[-1] == "message.deleted"
    history = env.admin.execute(
        "SELECT count(*) FROM vechat_message_edits WHERE organisation_id = %s", (o,)
    ).fetchone()
    assert history == (0,)
    assert assert_counters_exact(env, o, conv) == (0, 0)


def test_new_incoming_message_unarchives_for_the_receiver_only(env: Env) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as app:
        send(app, o, conv, P1, C1)
        # Each participant archives the conversation for themselves (P1 is participant 1).
        act(app, o, P1, "UPDATE vechat_conversations SET is_archived_by_participant1 = true "
            "WHERE organisation_id = %s AND id = %s", (o, conv))  # fmt: skip
        act(app, o, C1, "UPDATE vechat_conversations SET is_archived_by_participant2 = true "
            "WHERE organisation_id = %s AND id = %s", (o, conv))  # fmt: skip
        before = len(events(env, o, C1))
        send(app, o, conv, P1, C1)
        row = conversation_row(env, o, conv)
        assert (row["is_archived_by_participant1"], row["is_archived_by_participant2"]) == (
            True,
            False,
        )
        assert [kind for kind, _, _ in events(env, o, C1)[before:]] == [
            "message.created",
            "conversation.updated",
        ]
        send(app, o, conv, C1, P1)
        row = conversation_row(env, o, conv)
        assert not row["is_archived_by_participant1"]
    assert_event_log_gapless(env, o)


def test_read_receipt_reaches_the_sender_only_if_the_reader_shows_receipts(env: Env) -> None:
    o = env.new_organisation()
    hidden = env.conversation(o, P1, C1)  # C1 turns read receipts off
    shown = env.conversation(o, P2, C2)  # C2 keeps the default (on)
    with env.app() as app:
        act(
            app,
            o,
            C1,
            "INSERT INTO vechat_user_settings (organisation_id, user_id, user_type, "
            "show_read_receipts) VALUES (%s, %s, %s, false)",
            (o, C1.user_id, C1.user_type),
        )
        for conv, sender, reader in ((hidden, P1, C1), (shown, P2, C2)):
            first = send(app, o, conv, sender, reader)
            last = send(app, o, conv, sender, reader)
            assert read_up_to(app, o, conv, reader, last) == 2
            receipts = {
                user: [data for kind, _, data in events(env, o, user) if kind == "messages.read"]
                for user in (sender, reader)
            }
            assert len(receipts[reader]) == 1, "the reader's other tabs always hear of it"
            receipt = receipts[reader][0]
            assert receipt["up_to_message_id"] == last > first
            assert receipt["reader"] == {"user_id": reader.user_id, "user_type": reader.user_type}
            if reader == C1:
                assert receipts[sender] == []
            else:
                assert receipts[sender] == receipts[reader]
    assert_event_log_gapless(env, o)


def test_notify_payload_carries_ids_only_never_the_text(env: Env) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    secret = "do-not-broadcast-4711"
    with (
        h.admin_connect(env.postgres, env.database, autocommit=True) as listener,
        env.app() as app,
    ):
        listener.execute("LISTEN vechat_events")
        message = send(app, o, conv, P1, C1, secret)
        edit(app, o, message, P1, secret + " again")
        logged = sorted(
            env.admin.execute(
                "SELECT recipient_type, recipient_id, seq FROM vechat_events "
                "WHERE organisation_id = %s",
                (o,),
            ).fetchall()
        )
        assert len(logged) == 4  # created and updated, for both participants
        payloads: list[str] = []
        rung: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 5
        while len(rung) < len(logged) and time.monotonic() < deadline:
            for notify in listener.notifies(timeout=0.5, stop_after=1):
                document = json.loads(notify.payload)
                if document["o"] == o:
                    payloads.append(notify.payload)
                    rung.extend(tuple(entry) for entry in document["e"])
    for payload in payloads:
        assert secret not in payload
        document = json.loads(payload)
        assert set(document) == {"o", "e"}
        for entry in document["e"]:
            assert len(entry) == 3 and entry[0] in ("personnel", "client")
            assert all(isinstance(v, int) for v in entry[1:])
    # Every event of the log was rung, once, by organisation, recipient and seq alone.
    assert sorted(rung) == logged


@pytest.mark.parametrize(
    ("who", "change"),
    [
        ("receiver", "message = 'not yours'"),
        ("receiver", "deleted_at = now()"),
        ("receiver", "is_deleted_by_sender = true"),
        ("sender", "is_read = true"),
        ("sender", "is_delivered = true"),
        ("sender", "is_deleted_by_receiver = true"),
        ("receiver", "is_read = false"),  # read only ever goes from false to true
    ],
)
def test_participant_may_not_change_the_other_ones_columns(env: Env, who: str, change: str) -> None:
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as app:
        message = send(app, o, conv, P1, C1, "mine")
        if change == "is_read = false":
            read_up_to(app, o, conv, C1, message)
        user = P1 if who == "sender" else C1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            act(app, o, user, f"UPDATE vechat_messages SET {change} WHERE id = %s", (message,))
    assert message_row(env, o, message)["message"] == "mine"


FORGED = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("who", "change", "column"),
    [
        ("receiver", "is_read = true, read_at = %(t)s", "read_at"),
        ("receiver", "is_delivered = true, delivered_at = %(t)s", "delivered_at"),
        ("sender", "deleted_at = %(t)s", "deleted_at"),
    ],
    ids=["read_at", "delivered_at", "deleted_at"],
)
def test_server_stamps_read_delivery_and_deletion_times(
    env: Env, who: str, change: str, column: str
) -> None:
    """A participant says *that* a message was read, delivered or deleted, never *when*.

    The time travels to the peer (read receipts) and must not predate the message. Refusing the
    update (42501) would do as well as overriding the time.
    """
    o = env.new_organisation()
    conv = env.conversation(o)
    with env.app() as app:
        message = send(app, o, conv, P1, C1, "mine")
        user = P1 if who == "sender" else C1
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            act(
                app,
                o,
                user,
                f"UPDATE vechat_messages SET {change} WHERE id = %(id)s",
                {"t": FORGED, "id": message},
            )
    assert message_row(env, o, message)[column] != FORGED
