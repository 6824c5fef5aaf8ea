"""Everything that would make adoption lose or change a value, checked before anything
changes, and the plan `--dry-run` prints.

Longer than our usual module (~430 lines): most of it is the table of checks (`CHECKS`), one entry
per rule of the new schema that legacy rows may break, kept in one place so it can be read whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from vechat_rls.migrate.layout import Migration
from vechat_rls.migrate.legacy.shape import (
    HOLDING,
    TABLES,
    Say,
    Shape,
    Table,
    legacy_owner,
    qualified,
)
from vechat_rls.migrate.targets import Target

# --- checks: everything that would make adoption lose or change a value --------------------------


@dataclass(frozen=True)
class Check:
    """Rows of one legacy table that the new schema cannot take as they are."""

    table: str
    columns: tuple[str, ...]  # the check applies only when the table has all of them
    problem: str  # what is wrong with the rows found, and what to do
    where: str  # a condition over alias s (the legacy row); {holding} is the tables' schema


_PAIR_IN_ORDER = (
    "(s.participant1_id, s.participant1_type) < (s.participant2_id, s.participant2_type)"
)

CHECKS: tuple[Check, ...] = (
    Check(
        "vechat_conversations",
        ("participant1_id", "participant1_type", "participant2_id", "participant2_type"),
        "conversation pairs not stored lower participant first (equal ids: client first) or "
        "with oneself: swap the participant columns (and their counters and flags) or delete them",
        f"NOT ({_PAIR_IN_ORDER})",
    ),
    Check(
        "vechat_conversations",
        ("participant1_type", "participant2_type"),
        "participant types other than personnel or client",
        "s.participant1_type NOT IN ('personnel', 'client') "
        "OR s.participant2_type NOT IN ('personnel', 'client')",
    ),
    Check(
        "vechat_conversations",
        ("last_message_id",),
        "a last_message_id that is a message of another pair: set it NULL",
        """s.last_message_id IS NOT NULL AND EXISTS (
            SELECT FROM {holding}.vechat_messages m WHERE m.id = s.last_message_id
            AND ((m.sender_id, m.sender_type, m.receiver_id, m.receiver_type)
                 IS DISTINCT FROM (s.participant1_id, s.participant1_type,
                                   s.participant2_id, s.participant2_type))
            AND ((m.sender_id, m.sender_type, m.receiver_id, m.receiver_type)
                 IS DISTINCT FROM (s.participant2_id, s.participant2_type,
                                   s.participant1_id, s.participant1_type)))""",
    ),
    Check(
        "vechat_conversations",
        ("last_message_id",),
        "a last_message_id naming no message (no foreign key kept it): set it NULL",
        "s.last_message_id IS NOT NULL AND NOT EXISTS "
        "(SELECT FROM {holding}.vechat_messages m WHERE m.id = s.last_message_id)",
    ),
    Check(
        "vechat_conversations",
        ("created_at",),
        "conversations without created_at: set one (e.g. to updated_at)",
        "s.created_at IS NULL",
    ),
    Check(
        "vechat_messages",
        ("sender_id", "sender_type", "receiver_id", "receiver_type"),
        "messages to oneself (no conversation can hold them): delete them",
        "(s.sender_id, s.sender_type) = (s.receiver_id, s.receiver_type)",
    ),
    Check(
        "vechat_messages",
        ("sender_type", "receiver_type"),
        "sender or receiver types other than personnel or client",
        "s.sender_type NOT IN ('personnel', 'client') "
        "OR s.receiver_type NOT IN ('personnel', 'client')",
    ),
    Check(
        "vechat_messages",
        ("message_type",),
        "message types other than text, image, file, video, voice, audio, location",
        "s.message_type IS NULL OR s.message_type NOT IN "
        "('text', 'image', 'file', 'video', 'voice', 'audio', 'location')",
    ),
    Check(
        "vechat_messages",
        ("location_latitude", "location_longitude", "location_accuracy"),
        "coordinates out of range (latitude -90..90, longitude -180..180, accuracy >= 0)",
        "s.location_latitude NOT BETWEEN -90 AND 90 "
        "OR s.location_longitude NOT BETWEEN -180 AND 180 "
        "OR s.location_accuracy < 0",
    ),
    Check(
        "vechat_messages",
        ("audio_duration",),
        "negative audio durations",
        "s.audio_duration < 0",
    ),
    Check(
        "vechat_messages",
        ("reply_to_message_id",),
        "replies to a message of another conversation: set reply_to_message_id NULL",
        """s.reply_to_message_id IS NOT NULL AND EXISTS (
            SELECT FROM {holding}.vechat_messages m WHERE m.id = s.reply_to_message_id
            AND NOT ((m.sender_id, m.sender_type, m.receiver_id, m.receiver_type)
                     IN ((s.sender_id, s.sender_type, s.receiver_id, s.receiver_type),
                         (s.receiver_id, s.receiver_type, s.sender_id, s.sender_type))))""",
    ),
    Check(
        "vechat_messages",
        ("reply_to_message_id",),
        "a reply_to_message_id naming no message (no foreign key kept it): set it NULL",
        "s.reply_to_message_id IS NOT NULL AND NOT EXISTS "
        "(SELECT FROM {holding}.vechat_messages m WHERE m.id = s.reply_to_message_id)",
    ),
    Check(
        "vechat_messages",
        ("delivered_at", "read_at"),
        "delivered after they were read (delivered_at > read_at)",
        "s.delivered_at > s.read_at",
    ),
    Check(
        "vechat_messages",
        ("edited_at", "created_at"),
        "edited before they were created (edited_at < created_at)",
        "s.edited_at < s.created_at",
    ),
    Check(
        "vechat_messages",
        ("created_at",),
        "messages without created_at: set one (e.g. to updated_at)",
        "s.created_at IS NULL",
    ),
    Check(
        "vechat_presence",
        ("status",),
        "presence statuses other than online, offline, away, busy",
        "s.status NOT IN ('online', 'offline', 'away', 'busy')",
    ),
    Check(
        "vechat_presence",
        ("user_type",),
        "user types other than personnel or client",
        "s.user_type NOT IN ('personnel', 'client')",
    ),
    Check(
        "vechat_user_settings",
        ("user_type",),
        "user types other than personnel or client",
        "s.user_type NOT IN ('personnel', 'client')",
    ),
    Check(
        "vechat_user_settings",
        ("theme",),
        "themes other than light, dark, auto",
        "s.theme NOT IN ('light', 'dark', 'auto')",
    ),
    Check(
        "vechat_user_settings",
        ("font_size",),
        "font sizes other than small, medium, large",
        "s.font_size NOT IN ('small', 'medium', 'large')",
    ),
    Check(
        "vechat_user_settings",
        ("custom_settings",),
        "custom_settings that are not a JSON object of at most 16 KiB",
        "s.custom_settings IS NOT NULL AND (pg_temp.vechat_jsonb(s.custom_settings::text) IS NULL "
        "OR jsonb_typeof(pg_temp.vechat_jsonb(s.custom_settings::text)) <> 'object' "
        "OR octet_length(pg_temp.vechat_jsonb(s.custom_settings::text)::text) > 16384)",
    ),
)

# json and jsonb columns of the legacy tables may be text there; a value that is not JSON is kept
# as a JSON string rather than refused (connection_info is free text in some databases).
JSONB_HELPER_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.vechat_jsonb(value text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$
"""


def jsonb_helper(conn: psycopg.Connection[Any]) -> None:
    """pg_temp.vechat_jsonb, once per session (whoever created it owns it)."""
    row = conn.execute("SELECT to_regprocedure('pg_temp.vechat_jsonb(text)')").fetchone()
    if not row or row[0] is None:
        conn.execute(JSONB_HELPER_SQL)


_DEPENDENT_VIEWS_SQL = """
SELECT DISTINCT v.oid::regclass::text, t.relname
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = ANY(%s::regclass[])
  AND v.oid <> ALL(%s::regclass[])
ORDER BY 1
"""
_FOREIGN_KEYS_SQL = """
SELECT k.conname, k.conrelid::regclass::text, k.confrelid::regclass::text
FROM pg_catalog.pg_constraint k
WHERE k.contype = 'f' AND k.confrelid = ANY(%s::regclass[]) AND k.conrelid <> ALL(%s::regclass[])
ORDER BY 1
"""
_OTHER_TRIGGER_USERS_SQL = """
SELECT t.tgname, t.tgrelid::regclass::text
FROM pg_catalog.pg_trigger t
WHERE t.tgfoid = %s::regprocedure AND t.tgrelid <> ALL(%s::regclass[])
"""
_MISPLACED_EXTENSION_SQL = """
SELECT n.nspname FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'unaccent' AND n.nspname <> 'vechat'
"""
_CAN_ACT_FOR_SQL = """
SELECT rolsuper OR pg_catalog.pg_has_role(current_user, %s, 'USAGE')
FROM pg_catalog.pg_roles WHERE rolname = current_user
"""


def _first_ids(conn: psycopg.Connection[Any], table: Table, schema: str, where: str) -> list[str]:
    """How many rows match `where`, and the keys of the first five."""
    key = "s.id::text" if "id" in table.columns else "s.user_type || ':' || s.user_id"
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), (array_agg(k ORDER BY k))[1:5] FROM "
            "(SELECT {key} AS k FROM {table} s WHERE {where}) x"
        ).format(key=sql.SQL(key), table=qualified(schema, table.name), where=sql.SQL(where))
    ).fetchone()
    if not row or not row[0]:
        return []
    return [str(row[0]), ", ".join(row[1] or [])]


def problems(
    conn: psycopg.Connection[Any],
    shape: Shape,
    organisation: int,
    organisation_given: bool,
    timezone: str,
    schema: str = "public",
) -> list[str]:
    """Why adoption must not go ahead, one line each; empty when it may."""
    found: list[str] = []
    try:
        with conn.transaction():  # a savepoint: a bad zone must not end the transaction
            conn.execute("SELECT pg_catalog.now() AT TIME ZONE %s", (timezone,))
    except psycopg.Error:
        found.append(f"unknown time zone {timezone!r} (--legacy-timezone): use a name such as UTC")
    source = "--legacy-organisation-id (or the registry)" if organisation_given else "the default"
    for table in shape.tables.values():
        others = sorted(o for o in table.organisations if o != organisation)
        if others:
            held = " and ".join(str(o) for o in others)
            found.append(
                f"{table.name} holds rows of organisation {held}, but the legacy organisation id "
                f"is {organisation} ({source}): pass --legacy-organisation-id {others[0]} if the "
                f"rows are that organisation's, or correct organisation_id in the rows"
            )
    oids = [f"{schema}.{t}" for t in shape.tables]
    for table in shape.tables.values():
        row = conn.execute(_CAN_ACT_FOR_SQL, (table.owner,)).fetchone()
        if not row or not row[0]:
            found.append(
                f"{table.name} is owned by {table.owner}: run db migrate as that role or as a "
                "superuser (adoption moves the table)"
            )
    for view, table_name in conn.execute(_DEPENDENT_VIEWS_SQL, (oids, oids)).fetchall():
        found.append(
            f"view {view} reads {table_name}: adoption replaces the table; drop the view and "
            "create it again afterwards (every legacy column is kept)"
        )
    for name, referencing, referenced in conn.execute(_FOREIGN_KEYS_SQL, (oids, oids)):
        found.append(
            f"foreign key {name} of {referencing} references {referenced}: drop it before adoption"
        )
    for trigger in shape.triggers:
        users = conn.execute(_OTHER_TRIGGER_USERS_SQL, (trigger.function, oids)).fetchall()
        for other, on in users:
            found.append(
                f"function {trigger.function} of legacy trigger {trigger.name} is also used by "
                f"trigger {other} on {on}: give that trigger a function of its own first"
            )
    for (extension_schema,) in conn.execute(_MISPLACED_EXTENSION_SQL).fetchall():
        found.append(
            f"extension unaccent is installed in schema {extension_schema}; vechat-rls needs it in "
            "schema vechat: ALTER EXTENSION unaccent SET SCHEMA vechat, or drop it"
        )
    holding = conn.execute("SELECT to_regnamespace(%s)", (HOLDING,)).fetchone()
    if holding and holding[0] is not None:
        found.append(
            f"schema {HOLDING} already exists (left from an earlier adoption?): the legacy tables "
            "are moved there; drop or rename it first"
        )
    jsonb_helper(conn)
    for check in CHECKS:
        checked = shape.tables.get(check.table)
        if checked is None or not all(c in checked.columns for c in check.columns):
            continue
        where = check.where.replace("{holding}", schema)
        hit = _first_ids(conn, checked, schema, where)
        if hit:
            found.append(f"{check.table}: {hit[0]} rows with {check.problem} (first: {hit[1]})")
    for table in shape.tables.values():
        new_not_null = {"sender_id", "receiver_id", "participant1_id", "participant2_id", "user_id"}
        for name in sorted(new_not_null & set(table.columns)):
            if table.columns[name].not_null:
                continue
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
                    qualified(schema, table.name), sql.Identifier(name)
                )
            ).fetchone()
            if count and count[0]:
                found.append(f"{table.name}: {count[0]} rows without {name}")
    return found


# --- the plan: what each step will do ------------------------------------------------------------

_ORPHAN_PAIRS_SQL = """
SELECT count(*) FROM (
    SELECT DISTINCT
        CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
             THEN m.sender_id ELSE m.receiver_id END AS p1_id,
        CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
             THEN m.sender_type ELSE m.receiver_type END AS p1_type,
        CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
             THEN m.receiver_id ELSE m.sender_id END AS p2_id,
        CASE WHEN (m.sender_id, m.sender_type) < (m.receiver_id, m.receiver_type)
             THEN m.receiver_type ELSE m.sender_type END AS p2_type
    FROM {messages} m
) p
WHERE NOT EXISTS (SELECT FROM {conversations} c
                  WHERE (c.participant1_id, c.participant1_type,
                         c.participant2_id, c.participant2_type)
                        = (p.p1_id, p.p1_type, p.p2_id, p.p2_type))
"""


def orphan_pairs(conn: psycopg.Connection[Any], shape: Shape, schema: str = "public") -> int:
    if "vechat_messages" not in shape.tables:
        return 0
    if "vechat_conversations" not in shape.tables:
        row = conn.execute(
            sql.SQL(
                "SELECT count(DISTINCT (LEAST(ROW(sender_id, sender_type),"
                " ROW(receiver_id, receiver_type)), GREATEST(ROW(sender_id, sender_type),"
                " ROW(receiver_id, receiver_type)))) FROM {}"
            ).format(qualified(schema, "vechat_messages"))
        ).fetchone()
        return int(row[0]) if row else 0
    row = conn.execute(
        sql.SQL(_ORPHAN_PAIRS_SQL).format(
            messages=qualified(schema, "vechat_messages"),
            conversations=qualified(schema, "vechat_conversations"),
        )
    ).fetchone()
    return int(row[0]) if row else 0


def describe(shape: Shape, say: Say) -> None:
    for name in TABLES:
        table = shape.tables.get(name)
        if table is None:
            say(f"  {name}: absent (created empty)")
            continue
        keys = "; ".join(table.unique_keys) or "no unique key"
        say(f"  {name}: {table.rows} rows; unique {keys}; {table.describe_organisation()}")
    for trigger in shape.triggers:
        say(f"  trigger {trigger.name} on {trigger.table} ({trigger.function}): dropped")


def plan(
    conn: psycopg.Connection[Any],
    shape: Shape,
    migration: Migration,
    target: Target,
    say: Say,
) -> list[str]:
    """Print what adoption would do (`--dry-run`), and return the problems that would stop it."""
    organisation, given, timezone = legacy_owner(target)
    # Rolled back at the end: only the checks' temporary helper function is ever created.
    with conn.transaction(force_rollback=True):
        say(
            f"legacy VeChat tables found: would adopt them as organisation {organisation}, "
            f"naive timestamps read as {timezone}"
        )
        describe(shape, say)
        found = problems(conn, shape, organisation, given, timezone)
        orphans = orphan_pairs(conn, shape)
    locked = ", ".join(shape.names)
    say(f"would lock {locked} (ACCESS EXCLUSIVE) until the adoption commits")
    say(f"would move {locked} to schema {HOLDING} (emptied afterwards, kept for db rollback)")
    say(f"would apply {migration.label} (the whole vechat-rls schema)")
    for name in shape.names:
        say(f"would copy {shape.tables[name].rows} rows into public.{name}")
    say(f"would create {orphans} conversations for message pairs that have none")
    say("would recount every unread counter from the messages")
    for line in found:
        say(f"PROBLEM  {line}")
    return found
