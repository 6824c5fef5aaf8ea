"""Adopting the legacy VeChat tables in place (`db migrate`) and giving them back (`db rollback`).

A database of the ERP holds the old module's `vechat_conversations`, `vechat_messages` and maybe
`vechat_presence` / `vechat_user_settings` (docs/dba.md describes every shape we accept). Adoption
stands in for migration 0001 on such a database, in **one transaction**:

1. lock the legacy tables (ACCESS EXCLUSIVE, until the commit) and check everything that could
   make the upgrade lose or change a value: organisation ids already present, rows the new
   constraints would refuse, views and keys of the ERP that depend on the tables. Any problem:
   nothing is changed, every problem is printed, the run fails;
2. move the legacy tables, unchanged, into schema `vechat_legacy` (`ALTER TABLE … SET SCHEMA`:
   the same tables, nothing copied), saving and dropping their triggers (the old counters);
3. apply 0001 exactly as a fresh install does, so the catalog is a fresh install's;
4. copy the rows into the new tables with the same ids, values and timestamps (naive legacy
   timestamps read in `--legacy-timezone`, UTC by default), derive each message's
   `conversation_id` (creating a conversation for each orphan pair), recount every unread counter
   with `vechat.recount_unread`, and empty the legacy tables, which stay behind as the exact shape
   `db rollback` restores.

Why copy rather than alter the legacy tables in place: 0001 is released and must not change, and
the new tables differ in every key, type and trigger; copying into 0001's own tables makes the
adopted catalog equal a fresh install's by construction, and the emptied legacy tables keep every
original name (constraints, indexes, sequences) for the way back. The cost is one write of the
data, measured by bench/adopt.py.

`db rollback` to 0 reverses it in one transaction: refuse if rows of more than one organisation
exist, copy every row back into the legacy tables (deletions the legacy shape cannot express become
its delete-for-me flags), drop what 0001 created, move the legacy tables back to `public`, restore
their triggers and sequences. The old deployment guide's rollback semantics hold for a database
that had `organisation_id` added by hand: the column goes, and the pair or user unique key comes
back under the guide's name.

Rows move as the DBA, who alone may read the legacy tables (their privileges are never touched):
for that, the new tables' owner switches their row-level security and user triggers off inside
the transaction and on again before it commits, so no other session ever sees them without.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from vechat_rls import migrate

TABLES = ("vechat_conversations", "vechat_messages", "vechat_presence", "vechat_user_settings")
HOLDING = "vechat_legacy"
DEFAULT_ORGANISATION = 1
DEFAULT_TIMEZONE = "UTC"
# What the old deployment guide's rollback re-creates when a hand-migrated table lost its
# pair/user key to an organisation-led one.
GUIDE_UNIQUE_KEYS = {
    "vechat_conversations": (
        "IDX_vechat_conversations_participants",
        ("participant1_id", "participant1_type", "participant2_id", "participant2_type"),
    ),
    "vechat_presence": ("IDX_vechat_presence_user", ("user_id", "user_type")),
    "vechat_user_settings": ("IDX_vechat_user_settings_user", ("user_id", "user_type")),
}
# Tables 0001 creates beside the legacy ones: their presence means this is not a legacy database.
NEW_TABLES = (
    "vechat_contacts",
    "vechat_attachments",
    "vechat_message_edits",
    "vechat_events",
    "vechat_event_cursors",
)

Say = Callable[[str], None]

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


# --- what a legacy database holds --------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type, e.g. "timestamp without time zone"
    category: str  # pg_type.typcategory: S string, D date/time, E enum, U user (json), …
    not_null: bool
    default: str | None


@dataclass(frozen=True)
class Trigger:
    table: str
    name: str
    definition: str  # pg_get_triggerdef, taken while the table was in public
    function: str  # schema.name(argument types)
    function_schema: str


@dataclass
class Table:
    name: str
    columns: dict[str, Column]
    rows: int
    organisations: dict[int, int] = field(default_factory=dict)  # organisation_id -> rows
    null_organisations: int = 0
    unique_keys: list[str] = field(default_factory=list)
    owner: str = ""

    @property
    def has_organisation(self) -> bool:
        return "organisation_id" in self.columns

    def describe_organisation(self) -> str:
        if not self.has_organisation:
            return "no organisation_id"
        column = self.columns["organisation_id"]
        held = ", ".join(f"{o} ({n} rows)" for o, n in sorted(self.organisations.items()))
        nulls = f", {self.null_organisations} NULL" if self.null_organisations else ""
        kind = "NOT NULL" if column.not_null else "nullable"
        return f"organisation_id {column.type} {kind}: {held or 'no values'}{nulls}"


@dataclass
class Shape:
    """The legacy tables found in `public`, with their triggers."""

    tables: dict[str, Table]
    triggers: list[Trigger]

    @property
    def names(self) -> list[str]:
        return [t for t in TABLES if t in self.tables]


_COLUMNS_SQL = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory, a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_UNIQUE_KEYS_SQL = """
SELECT i.relname || ' (' || pg_catalog.array_to_string(ARRAY(
           SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
           ORDER BY k.n), ', ') || ')'
FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = %s::regclass AND x.indisunique AND NOT x.indisprimary
ORDER BY 1
"""
_TRIGGERS_SQL = """
SELECT c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid),
       pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '('
           || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
       n.nspname
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%s::regclass[])
ORDER BY c.relname, t.tgname
"""
_OWNER_SQL = (
    "SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE oid = %s::regclass"
)


def _qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def inspect(conn: psycopg.Connection[Any], schema: str = "public") -> Shape:
    """The legacy tables of `schema` as they are (counted as the DBA)."""
    tables: dict[str, Table] = {}
    for name in TABLES:
        regclass = f"{schema}.{name}"
        row = conn.execute("SELECT to_regclass(%s)", (regclass,)).fetchone()
        if not row or row[0] is None:
            continue
        columns = {
            r[0]: Column(r[0], r[1], r[2], r[3], r[4])
            for r in conn.execute(_COLUMNS_SQL, (regclass,)).fetchall()
        }
        qualified = _qualified(schema, name)
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified)).fetchone()
        table = Table(name, columns, count[0] if count else 0)
        if table.has_organisation:
            for organisation, rows in conn.execute(
                sql.SQL(
                    "SELECT organisation_id, count(*) FROM {} GROUP BY 1 ORDER BY 1 NULLS LAST"
                ).format(qualified)
            ).fetchall():
                if organisation is None:
                    table.null_organisations = rows
                else:
                    table.organisations[int(organisation)] = rows
        table.unique_keys = [r[0] for r in conn.execute(_UNIQUE_KEYS_SQL, (regclass,))]
        owner = conn.execute(_OWNER_SQL, (regclass,)).fetchone()
        table.owner = owner[0] if owner else ""
        tables[name] = table
    triggers = [
        Trigger(*r)
        for r in conn.execute(_TRIGGERS_SQL, ([f"{schema}.{t}" for t in tables],)).fetchall()
    ]
    return Shape(tables, triggers)


def detect(conn: psycopg.Connection[Any]) -> Shape | None:
    """The legacy shape when `public` holds legacy VeChat tables, None when it holds none.

    Called only while migration 0001 is not recorded; a database that has vechat-rls's tables
    without the ledger saying so is refused rather than guessed at.
    """
    present = [
        t
        for t in TABLES + NEW_TABLES
        if (row := conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)).fetchone())
        and row[0] is not None
    ]
    legacy = [t for t in present if t in TABLES]
    if not legacy:
        return None
    foreign = [t for t in present if t in NEW_TABLES]
    shape = inspect(conn)
    messages = shape.tables.get("vechat_messages")
    if foreign or (messages is not None and "conversation_id" in messages.columns):
        raise migrate.MigrationError(
            f"public.{(foreign or ['vechat_messages'])[0]} looks like vechat-rls's own schema, but "
            "the ledger (vechat.schema_migrations) does not record migration 0001: restore the "
            "ledger, or drop the half-created tables, before migrating"
        )
    return shape


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
_JSONB_HELPER_SQL = """
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


def _jsonb_helper(conn: psycopg.Connection[Any]) -> None:
    """pg_temp.vechat_jsonb, once per session (whoever created it owns it)."""
    row = conn.execute("SELECT to_regprocedure('pg_temp.vechat_jsonb(text)')").fetchone()
    if not row or row[0] is None:
        conn.execute(_JSONB_HELPER_SQL)


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
        ).format(key=sql.SQL(key), table=_qualified(schema, table.name), where=sql.SQL(where))
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
    _jsonb_helper(conn)
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
                    _qualified(schema, table.name), sql.Identifier(name)
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
            ).format(_qualified(schema, "vechat_messages"))
        ).fetchone()
        return int(row[0]) if row else 0
    row = conn.execute(
        sql.SQL(_ORPHAN_PAIRS_SQL).format(
            messages=_qualified(schema, "vechat_messages"),
            conversations=_qualified(schema, "vechat_conversations"),
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
    migration: migrate.Migration,
    target: migrate.Target,
    say: Say,
) -> list[str]:
    """Print what adoption would do (`--dry-run`), and return the problems that would stop it."""
    organisation, given, timezone = _operator(target)
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


# --- doing it ------------------------------------------------------------------------------------


def _operator(target: migrate.Target) -> tuple[int, bool, str]:
    given = target.legacy_organisation_id is not None
    organisation = target.legacy_organisation_id or DEFAULT_ORGANISATION
    return organisation, given, target.legacy_timezone or DEFAULT_TIMEZONE


class Steps:
    """Prints each step with what it touched and how long it took."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.started = time.monotonic()

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        started = time.monotonic()
        notes: list[str] = []
        yield notes
        detail = f": {', '.join(notes)}" if notes else ""
        self.say(f"  {title}{detail} ({time.monotonic() - started:.2f} s)")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _as_owner(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(migrate.OWNER_ROLE)))


def _as_dba(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET LOCAL ROLE NONE")


def _rowcount(cursor: psycopg.Cursor[Any]) -> int:
    return max(cursor.rowcount, 0)


def _new_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, Column]:
    return {
        r[0]: Column(r[0], r[1], r[2], r[3], r[4])
        for r in conn.execute(_COLUMNS_SQL, (f"public.{table}",)).fetchall()
    }


_GENERATED_SQL = """
SELECT attname FROM pg_catalog.pg_attribute
WHERE attrelid = %s::regclass AND attgenerated <> '' AND attnum > 0 AND NOT attisdropped
"""


def _forward(source: Column, target: Column, timezone: str) -> sql.Composable:
    """The legacy value as the new column takes it (assignment casts do the rest, loudly)."""
    value: sql.Composable = sql.SQL("s.{}").format(sql.Identifier(source.name))
    if target.type == "timestamp with time zone" and source.type == "timestamp without time zone":
        value = sql.SQL("({} AT TIME ZONE {})").format(value, sql.Literal(timezone))
    elif target.type == "jsonb" and source.type != "jsonb":
        value = sql.SQL("pg_temp.vechat_jsonb({}::text)").format(value)
        if source.type != "json":  # free text that is not JSON is kept as a JSON string
            value = sql.SQL("coalesce({}, to_jsonb(s.{}::text))").format(
                value, sql.Identifier(source.name)
            )
    if target.not_null and not source.not_null and target.default is not None:
        value = sql.SQL("coalesce({}, {})").format(value, sql.SQL(target.default))
    return value


def _backward(source: Column, target: Column, timezone: str, alias: str = "n") -> sql.Composable:
    """The new value as the legacy column takes it."""
    value: sql.Composable = sql.SQL("{}.{}").format(
        sql.Identifier(alias), sql.Identifier(source.name)
    )
    if source.type == "timestamp with time zone" and target.type == "timestamp without time zone":
        return sql.SQL("({} AT TIME ZONE {})").format(value, sql.Literal(timezone))
    if source.type == "jsonb" and target.category == "S":
        return sql.SQL(
            "CASE jsonb_typeof({0}) WHEN 'string' THEN {0} #>> '{{}}' ELSE {0}::text END"
        ).format(value)
    if target.category not in ("S", "N") or source.type == "jsonb":
        return sql.SQL("{}::{}").format(value, sql.SQL(target.type))
    return value


def _copy_columns(
    conn: psycopg.Connection[Any], table: Table, timezone: str
) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """Target columns and source expressions for the columns the two tables share."""
    new = _new_columns(conn, table.name)
    generated = {r[0] for r in conn.execute(_GENERATED_SQL, (f"public.{table.name}",))}
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name, column in table.columns.items():
        if name == "organisation_id" or name not in new or name in generated:
            continue
        names.append(sql.Identifier(name))
        values.append(_forward(column, new[name], timezone))
    return names, values


def _organisation_value(table: Table, organisation: int) -> sql.Composable:
    if table.has_organisation:
        return sql.SQL("coalesce(s.organisation_id::bigint, {})").format(sql.Literal(organisation))
    return sql.Literal(organisation)


def _sync_identity(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({name}, 'id'), coalesce(max(id), 0) + 1, false) "
            "FROM {table}"
        ).format(name=sql.Literal(f"public.{table}"), table=_qualified("public", table))
    )


# Written out rather than composed: the four normalised columns of each legacy message's pair.
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
    migration: migrate.Migration,
    layout: migrate.Layout,
    target: migrate.Target,
    say: Say,
) -> None:
    """Adopt the legacy tables in one transaction (module doc); raise, changing nothing, if not.

    The runner's roles and ledger (`migrate.bootstrap`) are set up in the same transaction.
    """
    organisation, given, timezone = _operator(target)
    steps = Steps(say)
    names = shape.names
    say(
        f"adopting the legacy VeChat tables as organisation {organisation} "
        f"(naive timestamps read as {timezone})"
    )
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{migrate.LOCK_TIMEOUT}'")
        with steps.step(f"locked {', '.join(names)} (ACCESS EXCLUSIVE, until commit)"):
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(_qualified("public", t) for t in names)
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
            raise migrate.MigrationError(
                f"legacy adoption refused: {len(found)} problem(s) listed above; "
                "nothing was changed"
            )
        orphans_expected = orphan_pairs(conn, shape)
        migrate.bootstrap(conn, layout, target)
        migrate.check_can_become_owner(conn)
        with steps.step(f"moved the legacy tables to schema {HOLDING}") as notes:
            _set_aside(conn, shape)
            notes.append(f"{len(shape.triggers)} triggers dropped")
        with steps.step(f"applied {migration.label}"):
            migrate.act_as_owner(conn, target)
            migrate.run_migration_files(conn, migration, target)
            _as_dba(conn)
        counts = _copy_in(conn, shape, organisation, timezone, steps)
        if counts["conversations_created"] != orphans_expected:  # pragma: no cover - invariant
            raise migrate.MigrationError(
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
                sql.Identifier(trigger.name), _qualified("public", trigger.table)
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
                _qualified("public", name), sql.Identifier(HOLDING)
            )
        )


@contextmanager
def _moving_rows(conn: psycopg.Connection[Any], new_tables: Sequence[str]) -> Iterator[None]:
    """For the block, the new tables' owner switches their row-level security and user triggers
    off, so that the DBA moves rows between them and the legacy tables (which only the DBA may
    read: their privileges are never touched). Inside the transaction only, like everything:
    no other session ever sees the tables in between."""
    _as_owner(conn)
    for table in new_tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY, DISABLE TRIGGER USER").format(
                _qualified("public", table)
            )
        )
    _as_dba(conn)
    yield
    _as_owner(conn)
    for table in new_tables:
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, "
                "ENABLE TRIGGER USER"
            ).format(_qualified("public", table))
        )
    _as_dba(conn)


def _legacy_only(conn: psycopg.Connection[Any], table: Table) -> list[Column]:
    new = _new_columns(conn, table.name)
    return [c for n, c in table.columns.items() if n not in new and n != "organisation_id"]


def _copy_in(
    conn: psycopg.Connection[Any], shape: Shape, organisation: int, timezone: str, steps: Steps
) -> dict[str, int]:
    counts = {"conversations_created": 0, "presence_created": 0, "counters_corrected": 0}
    org = sql.Literal(organisation)
    extra = {name: _legacy_only(conn, shape.tables[name]) for name in shape.names}
    if any(extra.values()):
        with steps.step("kept legacy-only columns") as notes:
            _as_owner(conn)
            for name, columns in extra.items():
                for column in columns:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            _qualified("public", name),
                            sql.Identifier(column.name),
                            sql.SQL(column.type),
                        )
                    )
                    conn.execute(
                        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                            _qualified("public", name),
                            sql.Identifier(column.name),
                            sql.Literal(
                                "Kept from the legacy VeChat schema; vechat-rls does not use it."
                            ),
                        )
                    )
                    notes.append(f"{name}.{column.name} {column.type}")
            _as_dba(conn)
    with _moving_rows(conn, TABLES):
        _jsonb_helper(conn)
        conversations = shape.tables.get("vechat_conversations")
        if conversations is not None:
            with steps.step("copied vechat_conversations") as notes:
                names, values = _copy_columns(conn, conversations, timezone)
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
                        _organisation_value(conversations, organisation),
                        sql.SQL(", ").join(v for _, v in pairs),
                        _qualified(HOLDING, "vechat_conversations"),
                    )
                )
                notes.append(f"{_rowcount(cur)} rows")
            _sync_identity(conn, "vechat_conversations")
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
                names, values = _copy_columns(conn, messages, timezone)
                cur = conn.execute(
                    sql.SQL(COPY_MESSAGES_SQL).format(
                        columns=sql.SQL(", ").join(names),
                        values=sql.SQL(", ").join(values),
                        organisation=_organisation_value(messages, organisation),
                        organisation_id=org,
                    )
                )
                copied = _rowcount(cur)
                notes.append(f"{copied} rows")
                if copied != messages.rows:  # pragma: no cover - every pair has a conversation now
                    raise migrate.MigrationError(
                        f"copied {copied} of {messages.rows} messages: some found no conversation"
                    )
            _sync_identity(conn, "vechat_messages")
            with steps.step(
                "kept each edited message's original text as its edit history"
            ) as notes:
                notes.append(f"{_rowcount(conn.execute(EDIT_HISTORY_SQL))} rows")
            with steps.step("set the last message of each conversation") as notes:
                touched = 0
                if conversations is not None and "last_message_id" in conversations.columns:
                    touched += _rowcount(
                        conn.execute(sql.SQL(LAST_MESSAGES_SQL).format(organisation=org))
                    )
                if created:
                    touched += _rowcount(
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
                names, values = _copy_columns(conn, table, timezone)
                cur = conn.execute(
                    sql.SQL("INSERT INTO {} (organisation_id, {}) SELECT {}, {} FROM {} s").format(
                        _qualified("public", name),
                        sql.SQL(", ").join(names),
                        _organisation_value(table, organisation),
                        sql.SQL(", ").join(values),
                        _qualified(HOLDING, name),
                    )
                )
                notes.append(f"{_rowcount(cur)} rows")
            _sync_identity(conn, name)
        if "vechat_user_settings" in shape.tables:
            with steps.step("copied each user's privacy settings to their presence row") as notes:
                updated = _rowcount(conn.execute(PRESENCE_FLAGS_SQL))
                created_presence = _rowcount(conn.execute(PRESENCE_FOR_SETTINGS_SQL))
                counts["presence_created"] = created_presence
                notes.append(f"{updated} rows updated, {created_presence} created")
            _sync_identity(conn, "vechat_presence")
        with steps.step("recounted every unread counter") as notes:
            row = conn.execute("SELECT vechat.recount_unread(%s)", (organisation,)).fetchone()
            counts["counters_corrected"] = int(row[0]) if row else 0
            notes.append(f"{counts['counters_corrected']} conversations corrected")
        with steps.step(f"emptied the tables in {HOLDING}"):
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(_qualified(HOLDING, t) for t in shape.names)
                )
            )
        for name in TABLES:
            counts[f"rows:{name}"] = _count(conn, "public", name)
        # Plans made from an empty table's statistics would last until autovacuum's first ANALYZE.
        with steps.step("analyzed the new tables"):
            _as_owner(conn)  # ANALYZE is the owner's (or a superuser's)
            for name in TABLES:
                conn.execute(sql.SQL("ANALYZE {}").format(_qualified("public", name)))
            _as_dba(conn)
    return counts


def _count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(_qualified(schema, table))
    ).fetchone()
    return int(row[0]) if row else 0


def _record(
    conn: psycopg.Connection[Any],
    shape: Shape,
    migration: migrate.Migration,
    organisation: int,
    timezone: str,
    counts: dict[str, int],
    seconds: float,
) -> None:
    _as_dba(conn)
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


# --- the way back: db rollback to before adoption ------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    """What the ledger says about the adoption of this database."""

    organisation_id: int
    legacy_timezone: str
    adopted_at: Any
    adopted_by: str
    seconds: float
    conversations_created: int
    presence_created: int
    counters_corrected: int
    tables: dict[str, Any]
    triggers: list[dict[str, str]]


_READ_ADOPTION_SQL = """
SELECT organisation_id, legacy_timezone, adopted_at, adopted_by, seconds::float8,
       conversations_created, presence_created, counters_corrected, tables, triggers
FROM vechat.schema_legacy_adoption
"""


def read_adoption(conn: psycopg.Connection[Any]) -> Adoption | None:
    row = conn.execute("SELECT to_regclass('vechat.schema_legacy_adoption')").fetchone()
    if not row or row[0] is None:
        return None
    found = conn.execute(_READ_ADOPTION_SQL).fetchone()
    return Adoption(*found) if found else None


_TENANT_TABLES_SQL = r"""
SELECT c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'vechat\_%'
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid
              AND a.attname = 'organisation_id' AND NOT a.attisdropped)
ORDER BY 1
"""


def _organisations_held(conn: psycopg.Connection[Any]) -> dict[int, list[str]]:
    """Every organisation with rows in a public.vechat_* table, and those tables. Row-level
    security is switched off on them for the rest of the caller's transaction (which either
    drops them or is rolled back), so that a DBA who is not a superuser counts every row."""
    tables = [r[0] for r in conn.execute(_TENANT_TABLES_SQL).fetchall()]
    _as_owner(conn)
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(_qualified("public", table))
        )
    _as_dba(conn)
    held: dict[int, list[str]] = {}
    for table in tables:
        for (organisation,) in conn.execute(
            sql.SQL("SELECT DISTINCT organisation_id FROM {}").format(_qualified("public", table))
        ).fetchall():
            held.setdefault(int(organisation), []).append(table)
    _as_dba(conn)
    return held


def _refuse_many(held: dict[int, list[str]]) -> None:
    if len(held) > 1:
        detail = "; ".join(
            f"organisation {o}: {', '.join(tables)}" for o, tables in sorted(held.items())
        )
        raise migrate.MigrationError(
            f"cannot roll back to the legacy VeChat schema: the database holds rows of "
            f"{len(held)} organisations ({detail}) and the legacy tables have no organisation_id "
            "to tell them apart; nothing was changed"
        )


# A message the legacy shape cannot express as deleted for everyone, or hidden because its
# participant deleted the whole conversation "for me", becomes hidden for that participant with
# the legacy flags (which mean exactly "delete for me").
_HIDDEN_FOR_SENDER = """(n.is_deleted_by_sender OR n.deleted_at IS NOT NULL
    OR coalesce((c.participant1_id, c.participant1_type) = (n.sender_id, n.sender_type)
                AND n.id <= c.hidden_through_message_id_participant1, false)
    OR coalesce((c.participant2_id, c.participant2_type) = (n.sender_id, n.sender_type)
                AND n.id <= c.hidden_through_message_id_participant2, false))"""
_HIDDEN_FOR_RECEIVER = _HIDDEN_FOR_SENDER.replace(
    "is_deleted_by_sender", "is_deleted_by_receiver"
).replace("(n.sender_id, n.sender_type)", "(n.receiver_id, n.receiver_type)")


def _copy_back(conn: psycopg.Connection[Any], shell: Table, timezone: str) -> int:
    new = _new_columns(conn, shell.name)
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name, column in shell.columns.items():
        if name not in new:
            continue
        names.append(sql.Identifier(name))
        if shell.name == "vechat_messages" and name == "is_deleted_by_sender":
            values.append(sql.SQL(_HIDDEN_FOR_SENDER))
        elif shell.name == "vechat_messages" and name == "is_deleted_by_receiver":
            values.append(sql.SQL(_HIDDEN_FOR_RECEIVER))
        else:
            values.append(_backward(new[name], column, timezone))
    join = sql.SQL("")
    if shell.name == "vechat_messages":
        join = sql.SQL(
            " LEFT JOIN public.vechat_conversations c"
            " ON c.organisation_id = n.organisation_id AND c.id = n.conversation_id"
        )
    order = sql.SQL(" ORDER BY n.id") if "id" in new else sql.SQL("")
    cur = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} n{}{}").format(
            _qualified(HOLDING, shell.name),
            sql.SQL(", ").join(names),
            sql.SQL(", ").join(values),
            _qualified("public", shell.name),
            join,
            order,
        )
    )
    return _rowcount(cur)


# The sequences behind the legacy tables' serial columns (owned or merely used by a default).
_SERIAL_SEQUENCES_SQL = """
SELECT a.attname, d.refobjid::regclass::text
FROM pg_catalog.pg_attrdef ad
JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
WHERE ad.adrelid = %s::regclass
"""


def _sync_serials(conn: psycopg.Connection[Any], table: str) -> None:
    for column, sequence in conn.execute(_SERIAL_SEQUENCES_SQL, (f"public.{table}",)).fetchall():
        conn.execute(
            sql.SQL("SELECT setval({}, coalesce(max({}), 0) + 1, false) FROM {}").format(
                sql.Literal(sequence), sql.Identifier(column), _qualified("public", table)
            )
        )


def restore_plan(
    conn: psycopg.Connection[Any], adoption: Adoption, migration: migrate.Migration, say: Say
) -> None:
    """`db rollback --dry-run` to before adoption: what would happen, or why it would refuse."""
    with conn.transaction(force_rollback=True):
        held = _organisations_held(conn)
        shells = inspect(conn, HOLDING)
        counts = {name: _count(conn, "public", name) for name in shells.names}
    _refuse_many(held)
    say(
        f"would roll back {migration.label}, adopted from the legacy VeChat tables on "
        f"{adoption.adopted_at:%Y-%m-%d %H:%M} as organisation {adoption.organisation_id}"
    )
    for name in shells.names:
        say(f"would copy {counts[name]} rows of public.{name} back into the legacy table")
    say(
        f"would drop everything {migration.label} created and move the legacy tables back to public"
    )
    for trigger in adoption.triggers:
        say(f"would restore trigger {trigger['name']} on {trigger['table']}")


def restore(
    conn: psycopg.Connection[Any],
    adoption: Adoption,
    migration: migrate.Migration,
    target: migrate.Target,
    say: Say,
) -> None:
    """Roll the adoption back in one transaction (module doc); refuse, changing nothing, if the
    database holds more than one organisation."""
    steps = Steps(say)
    timezone = adoption.legacy_timezone
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{migrate.LOCK_TIMEOUT}'")
        with steps.step(f"locked {', '.join(TABLES)} (ACCESS EXCLUSIVE, until commit)"):
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(_qualified("public", t) for t in TABLES)
                )
            )
        with steps.step("checked the organisations held") as notes:
            held = _organisations_held(conn)
            notes.append(", ".join(str(o) for o in sorted(held)) or "no rows")
        _refuse_many(held)
        shells = inspect(conn, HOLDING)
        missing = [n for n, t in adoption.tables.items() if t["present"] and n not in shells.tables]
        if missing:
            raise migrate.MigrationError(
                f"the legacy tables {', '.join(missing)} are missing from schema {HOLDING}: "
                "cannot restore the legacy shape; nothing was changed"
            )
        with steps.step("removed organisation_id from the legacy tables") as notes:
            for shell in shells.tables.values():
                if shell.has_organisation:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DROP COLUMN organisation_id").format(
                            _qualified(HOLDING, shell.name)
                        )
                    )
                    notes.append(shell.name)
        shells = inspect(conn, HOLDING)
        with _moving_rows(conn, ()):
            # Messages first: the legacy conversations' last_message_id references them.
            for name in (
                "vechat_messages",
                "vechat_conversations",
                "vechat_presence",
                "vechat_user_settings",
            ):
                copied = shells.tables.get(name)
                if copied is None:
                    continue
                with steps.step(f"copied public.{name} back") as notes:
                    notes.append(f"{_copy_back(conn, copied, timezone)} rows")
        with steps.step(f"dropped what {migration.label} created"):
            migrate.act_as_owner(conn, target)
            migrate.run_down_file(conn, migration, target)
            _as_dba(conn)
        with steps.step("moved the legacy tables back to public") as notes:
            for name in shells.names:
                conn.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA public").format(_qualified(HOLDING, name))
                )
                _sync_serials(conn, name)
            restored_functions: set[str] = set()
            for trigger in adoption.triggers:
                function = trigger["function"]
                if trigger["function_schema"] == "public" and function not in restored_functions:
                    moved = HOLDING + "." + function.removeprefix("public.")
                    conn.execute(
                        sql.SQL("ALTER FUNCTION {} SET SCHEMA public").format(sql.SQL(moved))
                    )
                    restored_functions.add(function)
                # The definition names the table and function as seen from public.
                conn.execute("SET LOCAL search_path = public")
                conn.execute(trigger["definition"].encode())
                notes.append(f"trigger {trigger['name']}")
            for name in shells.names:
                created = _guide_unique_key(conn, name)
                if created:
                    notes.append(created)
            conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(HOLDING)))
        conn.execute("DELETE FROM vechat.schema_legacy_adoption")
        conn.execute(
            "DELETE FROM vechat.schema_migrations WHERE version = %s", (migration.version,)
        )
        conn.execute("DELETE FROM vechat.schema_policy_files")
        conn.execute("DELETE FROM vechat.schema_function_files")
    say(f"back to the legacy VeChat schema in {steps.elapsed:.2f} s")


def _guide_unique_key(conn: psycopg.Connection[Any], table: str) -> str | None:
    """The old guide's pair/user unique index, when dropping organisation_id took the only one."""
    guide = GUIDE_UNIQUE_KEYS.get(table)
    if guide is None:
        return None
    name, columns = guide
    wanted = f"({', '.join(columns)})"
    # The primary key counts too: the older presence table is keyed by (user_id, user_type).
    keys = [
        r[0]
        for r in conn.execute(
            _UNIQUE_KEYS_SQL.replace("AND NOT x.indisprimary", ""), (f"public.{table}",)
        ).fetchall()
    ]
    if any(k.endswith(f" {wanted}") for k in keys):
        return None
    conn.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(name),
            _qualified("public", table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        )
    )
    return f"index {name}"


# --- what db verify and db status say about an adoption -----------------------------------------


def verify_report(conn: psycopg.Connection[Any]) -> tuple[bool, str, list[str]] | None:
    """`db verify`'s check of an adopted database: counts before and after (from the ledger),
    what adoption created, and the emptied legacy tables; None if the database was not adopted."""
    adoption = read_adoption(conn)
    if adoption is None:
        return None
    ok = True
    details = []
    created = {
        "vechat_conversations": (adoption.conversations_created, "conversations for orphan pairs"),
        "vechat_presence": (adoption.presence_created, "presence rows carrying privacy settings"),
    }
    for name in TABLES:
        entry = adoption.tables.get(name, {})
        added, why = created.get(name, (0, ""))
        before = entry.get("rows_before", 0) if entry.get("present") else None
        after = entry.get("rows_after", 0)
        expected = (before or 0) + added
        ok = ok and after == expected
        shown = "absent" if before is None else f"{before} rows"
        extra = f" (+{added} {why})" if added else ""
        mark = "" if after == expected else f"  MISMATCH: expected {expected}"
        details.append(f"{name}: {shown} before adoption, {after} after{extra}{mark}")
    details.append(f"unread counters corrected: {adoption.counters_corrected} conversations")
    for trigger in adoption.triggers:
        details.append(f"legacy trigger dropped (db rollback restores it): {trigger['name']}")
    shells = inspect(conn, HOLDING)
    full = [f"{t.name} ({t.rows} rows)" for t in shells.tables.values() if t.rows]
    ok = ok and not full
    details.append(
        f"schema {HOLDING}: {len(shells.tables)} legacy tables kept for db rollback, "
        + (f"NOT EMPTY: {', '.join(full)}" if full else "all empty")
    )
    title = (
        f"legacy adoption: {adoption.adopted_at:%Y-%m-%d %H:%M:%S%z} by {adoption.adopted_by} as "
        f"organisation {adoption.organisation_id} (naive timestamps read as "
        f"{adoption.legacy_timezone}), {adoption.seconds:.2f} s"
    )
    return ok, title, details


def status_note(conn: psycopg.Connection[Any]) -> str | None:
    adoption = read_adoption(conn)
    if adoption is None:
        return None
    return f"adopted from the legacy VeChat tables as organisation {adoption.organisation_id}"
