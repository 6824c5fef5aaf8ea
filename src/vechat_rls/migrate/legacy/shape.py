"""What a legacy database holds (tables, columns, keys, triggers), and the helpers every
step of adoption and rollback shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.steps import (
    OWNER_ROLE,
)
from vechat_rls.migrate.targets import Target

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


COLUMNS_SQL = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory, a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
UNIQUE_KEYS_SQL = """
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


def qualified(schema: str, table: str) -> sql.Composed:
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
            for r in conn.execute(COLUMNS_SQL, (regclass,)).fetchall()
        }
        where = qualified(schema, name)
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(where)).fetchone()
        table = Table(name, columns, count[0] if count else 0)
        if table.has_organisation:
            for organisation, rows in conn.execute(
                sql.SQL(
                    "SELECT organisation_id, count(*) FROM {} GROUP BY 1 ORDER BY 1 NULLS LAST"
                ).format(where)
            ).fetchall():
                if organisation is None:
                    table.null_organisations = rows
                else:
                    table.organisations[int(organisation)] = rows
        table.unique_keys = [r[0] for r in conn.execute(UNIQUE_KEYS_SQL, (regclass,))]
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
        raise MigrationError(
            f"public.{(foreign or ['vechat_messages'])[0]} looks like vechat-rls's own schema, but "
            "the ledger (vechat.schema_migrations) does not record migration 0001: restore the "
            "ledger, or drop the half-created tables, before migrating"
        )
    return shape


# --- shared by the steps -----------------------------------------------------------------------


def legacy_owner(target: Target) -> tuple[int, bool, str]:
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


def as_owner(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(OWNER_ROLE)))


def as_dba(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET LOCAL ROLE NONE")


def rowcount(cursor: psycopg.Cursor[Any]) -> int:
    return max(cursor.rowcount, 0)


def new_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, Column]:
    return {
        r[0]: Column(r[0], r[1], r[2], r[3], r[4])
        for r in conn.execute(COLUMNS_SQL, (f"public.{table}",)).fetchall()
    }


@contextmanager
def moving_rows(conn: psycopg.Connection[Any], new_tables: Sequence[str]) -> Iterator[None]:
    """For the block, the new tables' owner switches their row-level security and user triggers
    off, so that the DBA moves rows between them and the legacy tables (which only the DBA may
    read: their privileges are never touched). Inside the transaction only, like everything:
    no other session ever sees the tables in between."""
    as_owner(conn)
    for table in new_tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY, DISABLE TRIGGER USER").format(
                qualified("public", table)
            )
        )
    as_dba(conn)
    yield
    as_owner(conn)
    for table in new_tables:
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, "
                "ENABLE TRIGGER USER"
            ).format(qualified("public", table))
        )
    as_dba(conn)


def count_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(qualified(schema, table))
    ).fetchone()
    return int(row[0]) if row else 0
