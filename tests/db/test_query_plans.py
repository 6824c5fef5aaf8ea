"""Query plans under row-level security: the hot reads use indexes, never a sequential scan.

A database of its own holds 200,000 messages over 50 organisations (10,000 conversations, one busy
conversation per organisation). As `vechat_app`, with a user's context, the conversation list and
a conversation's latest page are EXPLAINed; the policies' `(SELECT fn())` predicates must reach
the organisation-first indexes, so no plan node is a `Seq Scan` on the big tables.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import seed as h
from tests.support.postgres import TestPostgres
from tests.support.seed import User

pytestmark = pytest.mark.db

ORGANISATIONS = 50
CONVERSATIONS_PER_ORGANISATION = 200
MESSAGES = 200_000
PERSONNEL = 20  # personnel ids 1..20, each in 10 conversations; client ids 1000..1199, one each
BIG_TABLES = {"vechat_messages", "vechat_conversations"}

# Conversation k (0-based) of organisation o has id (o - 1) * 200 + k + 1, between personnel
# 1 + k % 20 and client 1000 + k. Every other message of an organisation goes to its conversation
# 0 (a busy one, ~2,000 messages); the rest spread evenly (~10 each).
LOAD_SQL = f"""
SET session_replication_role = replica;  -- a bulk load: no per-row triggers, no key checks
INSERT INTO vechat_contacts (organisation_id, user_id, user_type, display_name)
SELECT o, u, CASE WHEN u < 1000 THEN 'personnel' ELSE 'client' END, 'user ' || u
FROM generate_series(1, {ORGANISATIONS}) o,
     (SELECT generate_series(1, {PERSONNEL})
      UNION ALL SELECT generate_series(1000, 999 + {CONVERSATIONS_PER_ORGANISATION})) u(u);
INSERT INTO vechat_conversations (organisation_id, id, participant1_id, participant1_type,
                                  participant2_id, participant2_type)
SELECT o, (o - 1) * {CONVERSATIONS_PER_ORGANISATION} + k + 1, 1 + k % {PERSONNEL}, 'personnel',
       1000 + k, 'client'
FROM generate_series(1, {ORGANISATIONS}) o,
     generate_series(0, {CONVERSATIONS_PER_ORGANISATION - 1}) k;
INSERT INTO vechat_messages (organisation_id, id, conversation_id, sender_id, sender_type,
                             receiver_id, receiver_type, message, is_read, created_at)
SELECT g.o, g.i, (g.o - 1) * {CONVERSATIONS_PER_ORGANISATION} + g.k + 1,
       CASE WHEN g.staff_sends THEN 1 + g.k % {PERSONNEL} ELSE 1000 + g.k END,
       CASE WHEN g.staff_sends THEN 'personnel' ELSE 'client' END,
       CASE WHEN g.staff_sends THEN 1000 + g.k ELSE 1 + g.k % {PERSONNEL} END,
       CASE WHEN g.staff_sends THEN 'client' ELSE 'personnel' END,
       'message ' || g.i, g.i < {MESSAGES - 5_000},
       now() - ({MESSAGES} - g.i) * interval '1 second'
FROM (SELECT i, o,
             CASE WHEN j % 2 = 0 THEN 0 ELSE (j / 2) % {CONVERSATIONS_PER_ORGANISATION} END AS k,
             (j / 2 + j / 400) % 2 = 0 AS staff_sends  -- both directions in every conversation
      FROM generate_series(1, {MESSAGES}) i,
           LATERAL (SELECT 1 + (i - 1) % {ORGANISATIONS} AS o, (i - 1) / {ORGANISATIONS} AS j) x
     ) g;
UPDATE vechat_conversations c
SET last_message_id = x.last_id, last_message_at = x.last_at,
    unread_count_participant1 = x.unread1, unread_count_participant2 = x.unread2
FROM (SELECT m.organisation_id, m.conversation_id, max(m.id) AS last_id,
             max(m.created_at) AS last_at,
             count(*) FILTER (WHERE NOT m.is_read AND m.receiver_type = 'personnel') AS unread1,
             count(*) FILTER (WHERE NOT m.is_read AND m.receiver_type = 'client') AS unread2
      FROM vechat_messages m GROUP BY 1, 2) x
WHERE (c.organisation_id, c.id) = (x.organisation_id, x.conversation_id);
INSERT INTO vechat_presence (organisation_id, user_id, user_type, status, last_seen)
SELECT organisation_id, user_id, user_type, 'online', now()
FROM vechat_contacts WHERE user_id % 3 = 0;
SET session_replication_role = DEFAULT;
"""

# The conversation list: row-level security alone picks the caller's conversations (as the API
# relies on), newest activity first, each with its newest message. $1: rows.
CONVERSATION_LIST_SQL = """
SELECT c.id, c.last_message_at, m.id AS last_id, m.message
FROM vechat_conversations c
LEFT JOIN LATERAL (
    SELECT m.id, m.message FROM vechat_messages m
    WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
    ORDER BY m.id DESC LIMIT 1
) m ON true
ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
LIMIT $1
"""

# A page of conversation $1 before message id $2 (NULL: the latest page), newest first; $3 rows.
# Reached through the conversation row, as the API does: `m.organisation_id = c.organisation_id`
# lets the planner walk the (organisation_id, conversation_id, id) key backwards. (Filtering
# vechat_messages by conversation_id alone leaves only the policy's organisation and participant
# predicates to estimate, and the planner then prefers the participant indexes, reading every
# message of the user to sort out 50.)
PAGE_SQL = """
SELECT m.id, m.sender_id, m.message, m.created_at
FROM vechat_conversations c
CROSS JOIN LATERAL (
    SELECT m.* FROM vechat_messages m
    WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
      AND m.id < coalesce($2::bigint, 9223372036854775807)
    ORDER BY m.id DESC
    LIMIT $3
) m
WHERE c.id = $1
"""

UNREAD_TOTAL_SQL = """
SELECT count(*) FROM vechat_messages m
WHERE m.receiver_id = (SELECT vechat.current_user_id())
  AND m.receiver_type = (SELECT vechat.current_user_type()) AND NOT m.is_read
"""

ORGANISATION = 17
BUSY_CONVERSATION = (ORGANISATION - 1) * CONVERSATIONS_PER_ORGANISATION + 1  # k = 0
STAFF = User(1, "personnel")  # in the busy conversation and 9 more
CLIENT = User(1000, "client")  # the busy conversation's client
USERS = [pytest.param(STAFF, id="personnel"), pytest.param(CLIENT, id="client")]
# asyncpg prepares and caches statements, so after five runs PostgreSQL may switch a statement to
# its generic plan, made without the parameters' values: both kinds of plan must be good.
PLAN_MODES = ["force_custom_plan", "force_generic_plan"]
PAGE_KEY = "vechat_messages_organisation_id_conversation_id_id_key"
PARTICIPANT_KEYS = {
    "vechat_conversations_participant1_idx",
    "vechat_conversations_participant2_idx",
}


@dataclass
class Plans:
    postgres: TestPostgres
    database: str
    load_seconds: float


@pytest.fixture(scope="module")
def plans_db(postgres: TestPostgres) -> Iterator[Plans]:
    with h.schema_database(postgres, "plans") as database:
        started = time.monotonic()
        with h.admin_connect(postgres, database, autocommit=True) as conn:
            conn.execute(LOAD_SQL.encode())
            conn.execute("VACUUM ANALYZE")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM vechat_messages), "
                "(SELECT count(DISTINCT organisation_id) FROM vechat_messages), "
                "(SELECT count(*) FROM vechat_conversations)"
            ).fetchone()
        assert counts == (MESSAGES, ORGANISATIONS, ORGANISATIONS * CONVERSATIONS_PER_ORGANISATION)
        yield Plans(postgres, database, time.monotonic() - started)


def explain(
    plans: Plans, user: User, mode: str, sql: str, *args: str
) -> tuple[list[Any], list[Any]]:
    """The JSON plan of prepared `sql` executed with `args` (SQL literals) as vechat_app acting
    for `user`, and the rows it returns."""
    with h.app_connect(plans.postgres, plans.database) as app:
        h.act_as(app, ORGANISATION, user)
        app.execute(f"SET LOCAL plan_cache_mode = {mode}")
        app.execute(f"PREPARE q AS {sql}".encode())
        execute = f"EXECUTE q({', '.join(args)})" if args else "EXECUTE q"
        row = app.execute(f"EXPLAIN (FORMAT JSON) {execute}".encode()).fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        result = app.execute(execute.encode()).fetchall()
        app.rollback()
    return plan, result


def indexes(plan: list[Any]) -> set[str]:
    """Every index the plan reads (index, index-only and bitmap index scans)."""
    return {node["Index Name"] for node in h.plan_nodes(plan) if "Index Name" in node}


def assert_no_seq_scan_on_big_tables(plan: list[Any]) -> None:
    seq = [
        node["Relation Name"]
        for node in h.plan_nodes(plan)
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in BIG_TABLES
    ]
    assert seq == [], json.dumps(plan, indent=1)


def api_sql(module: str, name: str) -> str:
    """A statement of the API itself, by module and constant name."""
    return str(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("user", USERS)
def test_conversation_list_uses_participant_indexes(plans_db: Plans, user: User, mode: str) -> None:
    plan, rows = explain(plans_db, user, mode, CONVERSATION_LIST_SQL, "50")
    assert_no_seq_scan_on_big_tables(plan)
    used = indexes(plan)
    assert PARTICIPANT_KEYS & used, used  # RLS's participant predicate, organisation first
    assert PAGE_KEY in used  # each conversation's newest message
    assert len(rows) == (10 if user == STAFF else 1)  # row-level security picked them
    assert rows[0][0] == BUSY_CONVERSATION


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("user", USERS)
def test_latest_page_reads_the_conversation_key_backwards(
    plans_db: Plans, user: User, mode: str
) -> None:
    plan, rows = explain(plans_db, user, mode, PAGE_SQL, str(BUSY_CONVERSATION), "NULL", "50")
    assert_no_seq_scan_on_big_tables(plan)
    assert PAGE_KEY in indexes(plan)
    assert len(rows) == 50
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)

    before = rows[-1][0]
    plan, older = explain(plans_db, user, mode, PAGE_SQL, str(BUSY_CONVERSATION), str(before), "50")
    assert_no_seq_scan_on_big_tables(plan)
    assert len(older) == 50 and older[0][0] < before


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_page_of_someone_elses_conversation_is_empty_and_still_indexed(
    plans_db: Plans, mode: str
) -> None:
    """Personnel 2 is not in the busy conversation: the policy leaves nothing, cheaply."""
    plan, rows = explain(
        plans_db, User(2, "personnel"), mode, PAGE_SQL, str(BUSY_CONVERSATION), "NULL", "50"
    )
    assert_no_seq_scan_on_big_tables(plan)
    assert rows == []


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_unread_total_uses_an_index(plans_db: Plans, mode: str) -> None:
    plan, rows = explain(plans_db, STAFF, mode, UNREAD_TOTAL_SQL)
    assert_no_seq_scan_on_big_tables(plan)
    assert rows[0][0] > 0


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("user", USERS)
def test_api_conversation_list_uses_indexes(plans_db: Plans, user: User, mode: str) -> None:
    sql = api_sql("vechat_rls.chat.conversations", "CONVERSATIONS_PAGE_SQL")
    plan, rows = explain(plans_db, user, mode, sql, "NULL", "NULL", "NULL", "50")
    assert_no_seq_scan_on_big_tables(plan)
    assert PARTICIPANT_KEYS & indexes(plan), indexes(plan)
    assert len(rows) == (10 if user == STAFF else 1)


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("user", USERS)
def test_api_latest_page_reads_the_conversation_key_backwards(
    plans_db: Plans, user: User, mode: str
) -> None:
    sql = api_sql("vechat_rls.chat.messages.reading", "MESSAGES_NEWEST_SQL")
    plan, rows = explain(
        plans_db, user, mode, sql, str(BUSY_CONVERSATION), "0", "9223372036854775807", "50"
    )
    assert_no_seq_scan_on_big_tables(plan)
    assert PAGE_KEY in indexes(plan)
    assert len(rows) == 50


def test_bulk_load_of_the_plan_database_is_quick(plans_db: Plans) -> None:
    """Not a benchmark: a guard that this module stays a small part of the suite's runtime."""
    assert plans_db.load_seconds < 30
