"""The ledger in schema vechat: what was applied, and how it compares with the files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.layout import Layout, Migration, PolicyFile

LEDGER_SQL = """
CREATE SCHEMA IF NOT EXISTS vechat AUTHORIZATION vechat_owner;
GRANT USAGE, CREATE ON SCHEMA vechat TO vechat_owner;
CREATE TABLE IF NOT EXISTS vechat.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE vechat.schema_migrations IS
    'Migration ledger of vechat-rls db migrate: one row per applied db/migrations file, '
    'with the sha256 of its .up.sql. Not tenant data.';
CREATE TABLE IF NOT EXISTS vechat.schema_policy_files (
    file_name  text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vechat.schema_policy_files IS
    'Which db/policies files (sha256) vechat-rls db migrate last applied; '
    'changed files are re-applied. Not tenant data.';
CREATE TABLE IF NOT EXISTS vechat.schema_function_files (
    file_name  text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vechat.schema_function_files IS
    'Which db/functions files (sha256) vechat-rls db migrate last applied; '
    'changed files are re-applied. Not tenant data.';
REVOKE ALL ON vechat.schema_migrations, vechat.schema_policy_files, vechat.schema_function_files
    FROM PUBLIC;
"""

READ_MIGRATIONS_SQL = """
SELECT version, name, checksum, applied_at, applied_by
FROM vechat.schema_migrations ORDER BY version
"""
READ_POLICY_FILES_SQL = (
    "SELECT file_name, checksum FROM vechat.schema_policy_files ORDER BY file_name"
)
READ_FUNCTION_FILES_SQL = (
    "SELECT file_name, checksum FROM vechat.schema_function_files ORDER BY file_name"
)
LEDGER_EXISTS_SQL = """
SELECT to_regclass('vechat.schema_migrations') IS NOT NULL,
       to_regclass('vechat.schema_policy_files') IS NOT NULL,
       to_regclass('vechat.schema_function_files') IS NOT NULL
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime
    applied_by: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass
class Ledger:
    """What the database says was applied."""

    migrations: dict[int, Applied] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    exists: bool = False

    @property
    def current(self) -> int:
        return max(self.migrations, default=0)


def read_ledger(conn: psycopg.Connection[Any]) -> Ledger:
    row = conn.execute(LEDGER_EXISTS_SQL).fetchone()
    ledger = Ledger(exists=bool(row and row[0]))
    if row and row[0]:
        for version, name, checksum, applied_at, applied_by in conn.execute(READ_MIGRATIONS_SQL):
            ledger.migrations[version] = Applied(version, name, checksum, applied_at, applied_by)
    if row and row[1]:
        ledger.policies = dict(conn.execute(READ_POLICY_FILES_SQL).fetchall())
    if row and row[2]:
        ledger.functions = dict(conn.execute(READ_FUNCTION_FILES_SQL).fetchall())
    return ledger


def changed_migrations(layout: Layout, ledger: Ledger) -> list[Migration]:
    """Applied migrations whose .up.sql no longer matches the ledger's checksum."""
    files = layout.by_version()
    return [
        files[v]
        for v, applied in sorted(ledger.migrations.items())
        if v in files and files[v].checksum != applied.checksum
    ]


def unknown_migrations(layout: Layout, ledger: Ledger) -> list[Applied]:
    """Applied migrations this release has no file for (a newer release ran here)."""
    files = layout.by_version()
    return [a for v, a in sorted(ledger.migrations.items()) if v not in files]


def check_ledger(layout: Layout, ledger: Ledger) -> None:
    """Refuse to act on a database whose history does not match the files."""
    for migration in changed_migrations(layout, ledger):
        applied = ledger.migrations[migration.version]
        raise MigrationError(
            f"migration {migration.label} was applied with checksum {applied.checksum[:12]} but "
            f"{migration.up.name} now has {migration.checksum[:12]}: never edit an applied "
            "migration, add a new one"
        )
    unknown = unknown_migrations(layout, ledger)
    if unknown:
        raise MigrationError(
            f"the database has migration {unknown[0].label} applied, which this release does not "
            "know: upgrade vechat-rls first"
        )
    pending_below = [
        m
        for m in layout.migrations
        if m.version not in ledger.migrations and m.version < ledger.current
    ]
    if pending_below:
        raise MigrationError(
            f"migration {pending_below[0].label} is older than the applied "
            f"{ledger.current:04d}: migrations must be applied in order (renumber it)"
        )


def pending_migrations(layout: Layout, ledger: Ledger, to: int | None = None) -> list[Migration]:
    limit = layout.head if to is None else to
    return [
        m for m in layout.migrations if m.version not in ledger.migrations and m.version <= limit
    ]


def stale_policies(
    layout: Layout, ledger: Ledger, *, all_of_them: bool = False
) -> list[PolicyFile]:
    """Policy files to (re-)apply: changed or new ones, or every one after a migration."""
    if all_of_them:
        return list(layout.policies)
    return [p for p in layout.policies if ledger.policies.get(p.name) != p.checksum]


def stale_functions(
    layout: Layout, ledger: Ledger, *, all_of_them: bool = False
) -> list[PolicyFile]:
    """Function files to (re-)apply: changed or new ones, or every one after a migration."""
    if all_of_them:
        return list(layout.functions)
    return [f for f in layout.functions if ledger.functions.get(f.name) != f.checksum]
