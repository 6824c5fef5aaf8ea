"""Adoption itself: one transaction from the legacy tables to vechat-rls's own, step by step.

Longer than our usual module (~470 lines): its SQL statements are the steps of that single
transaction, and they read best top to bottom in the order they run.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.layout import Layout, Migration
from vechat_rls.migrate.legacy.checks import (
    jsonb_helper,
    orphan_pairs,
    problems,
)
from vechat_rls.migrate.legacy.columns import (
    copy_columns,
    organisation_value,
    sync_identity,
)
from vechat_rls.migrate.legacy.shape import (
    HOLDING,
    TABLES,
    Column,
    Say,
    Shape,
    Steps,
    Table,
    as_dba,
    as_owner,
    count_rows,
    inspect,
    legacy_owner,
    moving_rows,
    new_columns,
    qualified,
    rowcount,
)
from vechat_rls.migrate.steps import (
    LOCK_TIMEOUT,
    act_as_owner,
    bootstrap,
    check_can_become_owner,
    run_migration_files,
)
from vechat_rls.migrate.targets import Target

ADOPTION_LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS vechat.schema_legacy_adoption (
    singleton             boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    organisation_id       bigint      NOT NULL,
    legacy_timezone       text        NOT NULL,
    adopted_at            timestamptz NOT NULL DEFAULT now(),
    adopted_by            text        NOT NULL DEFAULT current_user,
    seconds               numeric     NOT NULL,
    conversations_created integer     NOT NULL,
    presence_created      integer     NOT NULL,
    counters_corrected    integer     NOT NULL,
    tables                jsonb       NOT NULL,
    triggers              jsonb       NOT NULL
);
COMMENT ON TABLE vechat.schema_legacy_adoption IS
    'The adoption of the legacy VeChat tables by vechat-rls db migrate: row counts before and '
    'after, what was created, the legacy triggers it dropped (restored by db rollback). '
    'Not tenant data.';
REVOKE ALL ON vechat.schema_legacy_adoption FROM PUBLIC;
"""


_PAIRS_OF_MESSAGES_SQL = """
SELECT
    CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
         THEN m.sender_id ELSE m.receiver_id END AS p1_id,
    CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
         THEN m.sender_type ELSE m.receiver_type END AS p1_type,
    CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
         THEN m.receiver_id ELSE m.sender_id END AS p2_id,
    CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
         THEN m.receiver_type ELSE m.sender_type END AS p2_type,
    min(m.created_at {at_tz}) AS first_at,
    max(m.created_at {at_tz}) AS last_at
FROM vechat_legacy.vechat_messages m
GROUP BY 1, 2, 3, 4
"""

CREATE_ORPHANS_SQL = """
INSERT INTO public.vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type,
     created_at, updated_at)
SELECT {organisation}, p.p1_id, p.p1_type, p.p2_id, p.p2_type, p.first_at, p.last_at
FROM ({pairs}) p
WHERE NOT EXISTS (
    SELECT FROM public.vechat_conversations c
    WHERE c.organisation_id = {organisation}
      AND (c.participant1_id, c.participant1_type, c.participant2_id, c.participant2_type)
          = (p.p1_id, p.p1_type, p.p2_id, p.p2_type))
ORDER BY p.first_at, p.p1_type, p.p1_id, p.p2_type, p.p2_id
RETURNING id
"""

# Each legacy message finds its conversation by its normalised pair.
COPY_MESSAGES_SQL = """
INSERT INTO public.vechat_messages (organisation_id, conversation_id, {columns})
SELECT {organisation}, c.id, {values}
FROM vechat_legacy.vechat_messages s
JOIN public.vechat_conversations c
  ON c.organisation_id = {organisation_id}
 AND (c.participant1_id, c.participant1_type, c.participant2_id, c.participant2_type) = (
    CASE WHEN (s.sender_id, s.sender_type) < (s.receiver_id, s.receiver_type)
         THEN s.sender_id ELSE s.receiver_id END,
    CASE WHEN (s.sender_id, s.sender_type) < (s.receiver_id, s.receiver_type)
         THEN s.sender_type ELSE s.receiver_type END,
    CASE WHEN (s.sender_id, s.sender_type) < (s.receiver_id, s.receiver_type)
         THEN s.receiver_id ELSE s.sender_id END,
    CASE WHEN (s.sender_id, s.sender_type) < (s.receiver_id, s.receiver_type)
         THEN s.receiver_type ELSE s.sender_type END)
"""

# The old module kept the text before the first edit in original_message; GET /messages/{id}/edits
# reads the history from vechat_message_edits, so that text becomes the message's first version.
EDIT_HISTORY_SQL = """
INSERT INTO public.vechat_message_edits (organisation_id, message_id, previous_message, edited_at)
SELECT organisation_id, id, original_message, coalesce(edited_at, updated_at, created_at)
FROM public.vechat_messages
WHERE original_message IS NOT NULL
ORDER BY id
"""

# The legacy conversations keep their last message as it was (NULL where the old module lost it
# to ON DELETE SET NULL); conversations adoption created get their newest message.
LAST_MESSAGES_SQL = """
UPDATE public.vechat_conversations c
SET last_message_id = s.last_message_id
FROM vechat_legacy.vechat_conversations s
WHERE c.organisation_id = {organisation} AND c.id = s.id AND s.last_message_id IS NOT NULL
"""
ORPHAN_LAST_MESSAGES_SQL = """
UPDATE public.vechat_conversations c
SET last_message_id = m.id, last_message_at = m.created_at
FROM (SELECT DISTINCT ON (conversation_id) organisation_id, conversation_id, id, created_at
      FROM public.vechat_messages
      WHERE organisation_id = {organisation} AND conversation_id = ANY(%s)
      ORDER BY conversation_id, id DESC) m
WHERE c.organisation_id = m.organisation_id AND c.id = m.conversation_id
"""

# Others learn a user's show_online_status / show_read_receipts from the user's presence row,
# which every settings write keeps in step (vechat.user_settings_after_write). A user whose legacy
# settings hide either gets a presence row carrying that, so it holds from the first minute.
PRESENCE_FLAGS_SQL = """
UPDATE public.vechat_presence p
SET show_online_status = s.show_online_status, show_read_receipts = s.show_read_receipts
FROM public.vechat_user_settings s
WHERE p.organisation_id = s.organisation_id AND p.user_type = s.user_type AND p.user_id = s.user_id
"""
PRESENCE_FOR_SETTINGS_SQL = """
INSERT INTO public.vechat_presence
    (organisation_id, user_id, user_type, show_online_status, show_read_receipts)
SELECT s.organisation_id, s.user_id, s.user_type, s.show_online_status, s.show_read_receipts
FROM public.vechat_user_settings s
WHERE NOT (s.show_online_status AND s.show_read_receipts)
  AND NOT EXISTS (SELECT FROM public.vechat_presence p
                  WHERE p.organisation_id = s.organisation_id AND p.user_type = s.user_type
                    AND p.user_id = s.user_id)
"""


def adopt(
    conn: psycopg.Connection[Any],
    shape: Shape,
    migration: Migration,
    layout: Layout,
    target: Target,
    say: Say,
) -> None:
    """Adopt the legacy tables in one transaction (module doc); raise, changing nothing, if not.

    The runner's roles and ledger (`bootstrap`) are set up in the same transaction.
    """
    organisation, given, timezone = legacy_owner(target)
    steps = Steps(say)
    names = shape.names
    say(
        f"adopting the legacy VeChat tables as organisation {organisation} "
        f"(naive timestamps read as {timezone})"
    )
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        with steps.step(f"locked {', '.join(names)} (ACCESS EXCLUSIVE, until commit)"):
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(qualified("public", t) for t in names)
                )
            )
        shape = inspect(conn)  # counted again under the lock
        with steps.step("checked the legacy rows") as notes:
            found = problems(conn, shape, organisation, given, timezone)
            notes.append(
                f"{sum(t.rows for t in shape.tables.values())} rows, {len(found)} problems"
            )
        if found:
            for line in found:
                say(f"PROBLEM  {line}")
            raise MigrationError(
                f"legacy adoption refused: {len(found)} problem(s) listed above; "
                "nothing was changed"
            )
        orphans_expected = orphan_pairs(conn, shape)
        bootstrap(conn, layout, target)
        check_can_become_owner(conn)
        with steps.step(f"moved the legacy tables to schema {HOLDING}") as notes:
            _set_aside(conn, shape)
            notes.append(f"{len(shape.triggers)} triggers dropped")
        with steps.step(f"applied {migration.label}"):
            act_as_owner(conn, target)
            run_migration_files(conn, migration, target)
            as_dba(conn)
        counts = _copy_in(conn, shape, organisation, timezone, steps)
        if counts["conversations_created"] != orphans_expected:  # pragma: no cover - invariant
            raise MigrationError(
                f"expected {orphans_expected} conversations for orphan pairs, created "
                f"{counts['conversations_created']}"
            )
        with steps.step("recorded the adoption in the ledger"):
            _record(conn, shape, migration, organisation, timezone, counts, steps.elapsed)
    say(
        f"adopted as organisation {organisation} in {steps.elapsed:.2f} s "
        f"(tables locked throughout)"
    )


def _set_aside(conn: psycopg.Connection[Any], shape: Shape) -> None:
    """Triggers saved and dropped, functions and tables moved to the holding schema (as the DBA)."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOLDING)))
    conn.execute(
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(HOLDING),
            sql.Literal(
                "The legacy VeChat tables, emptied by vechat-rls adoption and kept only so that "
                "db rollback can restore their exact shape. No rows, no privileges."
            ),
        )
    )
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(HOLDING)))
    moved: set[str] = set()
    for trigger in shape.triggers:
        conn.execute(
            sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(trigger.name), qualified("public", trigger.table)
            )
        )
        if trigger.function_schema == "public" and trigger.function not in moved:
            conn.execute(
                sql.SQL("ALTER FUNCTION {} SET SCHEMA {}").format(
                    sql.SQL(trigger.function), sql.Identifier(HOLDING)
                )
            )
            moved.add(trigger.function)
    for name in shape.names:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                qualified("public", name), sql.Identifier(HOLDING)
            )
        )


def _legacy_only(conn: psycopg.Connection[Any], table: Table) -> list[Column]:
    new = new_columns(conn, table.name)
    return [c for n, c in table.columns.items() if n not in new and n != "organisation_id"]


def _copy_in(
    conn: psycopg.Connection[Any], shape: Shape, organisation: int, timezone: str, steps: Steps
) -> dict[str, int]:
    counts = {"conversations_created": 0, "presence_created": 0, "counters_corrected": 0}
    org = sql.Literal(organisation)
    extra = {name: _legacy_only(conn, shape.tables[name]) for name in shape.names}
    if any(extra.values()):
        with steps.step("kept legacy-only columns") as notes:
            as_owner(conn)
            for name, columns in extra.items():
                for column in columns:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            qualified("public", name),
                            sql.Identifier(column.name),
                            sql.SQL(column.type),
                        )
                    )
                    conn.execute(
                        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                            qualified("public", name),
                            sql.Identifier(column.name),
                            sql.Literal(
                                "Kept from the legacy VeChat schema; vechat-rls does not use it."
                            ),
                        )
                    )
                    notes.append(f"{name}.{column.name} {column.type}")
            as_dba(conn)
    with moving_rows(conn, TABLES):
        jsonb_helper(conn)
        conversations = shape.tables.get("vechat_conversations")
        if conversations is not None:
            with steps.step("copied vechat_conversations") as notes:
                names, values = copy_columns(conn, conversations, timezone)
                pairs = [
                    (n, v)
                    for n, v in zip(names, values, strict=True)
                    if n != sql.Identifier("last_message_id")
                ]
                cur = conn.execute(
                    sql.SQL(
                        "INSERT INTO public.vechat_conversations (organisation_id, {}) "
                        "SELECT {}, {} FROM {} s"
                    ).format(
                        sql.SQL(", ").join(n for n, _ in pairs),
                        organisation_value(conversations, organisation),
                        sql.SQL(", ").join(v for _, v in pairs),
                        qualified(HOLDING, "vechat_conversations"),
                    )
                )
                notes.append(f"{rowcount(cur)} rows")
            sync_identity(conn, "vechat_conversations")
        messages = shape.tables.get("vechat_messages")
        created: list[int] = []
        if messages is not None:
            with steps.step("created conversations for message pairs that had none") as notes:
                at_tz = ""
                if (
                    messages.columns.get("created_at")
                    and messages.columns["created_at"].type == "timestamp without time zone"
                ):
                    at_tz = f"AT TIME ZONE {sql.Literal(timezone).as_string(conn)}"
                pairs_sql = _PAIRS_OF_MESSAGES_SQL.format(at_tz=at_tz)
                cur = conn.execute(
                    sql.SQL(CREATE_ORPHANS_SQL).format(organisation=org, pairs=sql.SQL(pairs_sql))
                )
                created = [r[0] for r in cur.fetchall()]
                counts["conversations_created"] = len(created)
                notes.append(f"{len(created)} rows")
            with steps.step("copied vechat_messages") as notes:
                names, values = copy_columns(conn, messages, timezone)
                cur = conn.execute(
                    sql.SQL(COPY_MESSAGES_SQL).format(
                        columns=sql.SQL(", ").join(names),
                        values=sql.SQL(", ").join(values),
                        organisation=organisation_value(messages, organisation),
                        organisation_id=org,
                    )
                )
                copied = rowcount(cur)
                notes.append(f"{copied} rows")
                if copied != messages.rows:  # pragma: no cover - every pair has a conversation now
                    raise MigrationError(
                        f"copied {copied} of {messages.rows} messages: some found no conversation"
                    )
            sync_identity(conn, "vechat_messages")
            with steps.step(
                "kept each edited message's original text as its edit history"
            ) as notes:
                notes.append(f"{rowcount(conn.execute(EDIT_HISTORY_SQL))} rows")
            with steps.step("set the last message of each conversation") as notes:
                touched = 0
                if conversations is not None and "last_message_id" in conversations.columns:
                    touched += rowcount(
                        conn.execute(sql.SQL(LAST_MESSAGES_SQL).format(organisation=org))
                    )
                if created:
                    touched += rowcount(
                        conn.execute(
                            sql.SQL(ORPHAN_LAST_MESSAGES_SQL).format(organisation=org), (created,)
                        )
                    )
                notes.append(f"{touched} rows")
        for name in ("vechat_presence", "vechat_user_settings"):
            table = shape.tables.get(name)
            if table is None:
                continue
            with steps.step(f"copied {name}") as notes:
                names, values = copy_columns(conn, table, timezone)
                cur = conn.execute(
                    sql.SQL("INSERT INTO {} (organisation_id, {}) SELECT {}, {} FROM {} s").format(
                        qualified("public", name),
                        sql.SQL(", ").join(names),
                        organisation_value(table, organisation),
                        sql.SQL(", ").join(values),
                        qualified(HOLDING, name),
                    )
                )
                notes.append(f"{rowcount(cur)} rows")
            sync_identity(conn, name)
        if "vechat_user_settings" in shape.tables:
            with steps.step("copied each user's privacy settings to their presence row") as notes:
                updated = rowcount(conn.execute(PRESENCE_FLAGS_SQL))
                created_presence = rowcount(conn.execute(PRESENCE_FOR_SETTINGS_SQL))
                counts["presence_created"] = created_presence
                notes.append(f"{updated} rows updated, {created_presence} created")
            sync_identity(conn, "vechat_presence")
        with steps.step("recounted every unread counter") as notes:
            row = conn.execute("SELECT vechat.recount_unread(%s)", (organisation,)).fetchone()
            counts["counters_corrected"] = int(row[0]) if row else 0
            notes.append(f"{counts['counters_corrected']} conversations corrected")
        with steps.step(f"emptied the tables in {HOLDING}"):
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(qualified(HOLDING, t) for t in shape.names)
                )
            )
        for name in TABLES:
            counts[f"rows:{name}"] = count_rows(conn, "public", name)
        # Plans made from an empty table's statistics would last until autovacuum's first ANALYZE.
        with steps.step("analyzed the new tables"):
            as_owner(conn)  # ANALYZE is the owner's (or a superuser's)
            for name in TABLES:
                conn.execute(sql.SQL("ANALYZE {}").format(qualified("public", name)))
            as_dba(conn)
    return counts


def _record(
    conn: psycopg.Connection[Any],
    shape: Shape,
    migration: Migration,
    organisation: int,
    timezone: str,
    counts: dict[str, int],
    seconds: float,
) -> None:
    as_dba(conn)
    conn.execute(ADOPTION_LEDGER_SQL)
    tables: dict[str, Any] = {}
    for name in TABLES:
        table = shape.tables.get(name)
        tables[name] = {
            "present": table is not None,
            "rows_before": table.rows if table else 0,
            "rows_after": counts[f"rows:{name}"],
            "organisation_id": None
            if table is None or not table.has_organisation
            else ("not null" if table.columns["organisation_id"].not_null else "nullable"),
            "unique_keys": table.unique_keys if table else [],
        }
    triggers = [
        {
            "table": t.table,
            "name": t.name,
            "definition": t.definition,
            "function": t.function,
            "function_schema": t.function_schema,
        }
        for t in shape.triggers
    ]
    conn.execute(
        "INSERT INTO vechat.schema_legacy_adoption (organisation_id, legacy_timezone, seconds, "
        "conversations_created, presence_created, counters_corrected, tables, triggers) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            organisation,
            timezone,
            round(seconds, 3),
            counts["conversations_created"],
            counts["presence_created"],
            counts["counters_corrected"],
            Jsonb(tables),
            Jsonb(triggers),
        ),
    )
    conn.execute(
        "INSERT INTO vechat.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )
