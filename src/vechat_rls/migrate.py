"""The migration runner: applies db/migrations, db/functions and db/policies to each target.

Every target is handled on its own connection as the DBA (a superuser or the database owner):

1. take a session advisory lock (a second runner on the same database gets a one-line error);
2. read the ledger (`vechat.schema_migrations`, `vechat.schema_policy_files`) and refuse to go on if
   an applied migration's file changed;
3. apply `db/policies/00_roles.sql` as the DBA (cluster roles, idempotent) and create the ledger;
4. apply each pending migration in its own transaction under `SET LOCAL ROLE vechat_owner`, so that
   every object it creates is owned by vechat_owner, its verify step and ledger row in the same
   transaction;
5. when the database is at the newest migration, re-apply the repeatable files whose checksum
   changed (all of them after any migration) in one transaction, again as vechat_owner: first
   `db/functions/` (functions, triggers and views, all `CREATE OR REPLACE`), then `db/policies/`.

Migrations hold what cannot be re-run (tables, columns, data); the two repeatable tiers hold what
is re-created whole each time it changes, so a later change of a function or a policy is a diff of
its file, not a copy of it in a new migration (docs/migrations.md).

A migration may read `current_setting('vechat.legacy_organisation_id', true)` and
`vechat.legacy_timezone`: the runner sets them (transaction-local) from the command line or the
registry, for the adoption of a legacy VeChat schema.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from vechat_rls import legacy, registry
from vechat_rls.cli import CliError

DB_DIR_ENV = "VECHAT_DB_DIR"
ADMIN_URL_ENV = "VECHAT_ADMIN_DATABASE_URL"
REGISTRY_ENV = registry.ENV
OWNER_ROLE = "vechat_owner"
ROLES_FILE = "00_roles.sql"
# pg_try_advisory_lock key of every runner: "vechat" in ASCII, then 1. Advisory locks are scoped to
# the current database, so runners on different databases of one server never wait for each other.
LOCK_KEY = 0x7665636861740001
LOCK_TIMEOUT = "60s"  # how long a migration waits for a table lock held by live traffic
ORIGINAL_TABLES = (
    "vechat_conversations",
    "vechat_messages",
    "vechat_presence",
    "vechat_user_settings",
)

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.(up|down|verify)\.sql$")


class MigrationError(Exception):
    """A one-line failure of one target; nothing of the failing step was committed."""


# --- what is on disk ---------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Migration:
    """One `NNNN_name` migration: its up, down and optional verify files."""

    version: int
    name: str
    up: Path
    down: Path
    verify: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return sha256_file(self.up)


@dataclass(frozen=True)
class PolicyFile:
    """One idempotent file of `db/functions/` or `db/policies/`, re-applied when it changes."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return sha256_file(self.path)


@dataclass(frozen=True)
class Layout:
    """The migrations and policy files of one `db/` directory."""

    migrations: tuple[Migration, ...]
    policies: tuple[PolicyFile, ...]  # without the roles file, in file-name order
    roles: Path | None
    functions: tuple[PolicyFile, ...] = ()  # db/functions, in file-name order

    @property
    def head(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}


def default_db_dir() -> Path:
    """`db/` of the source tree, or `$VECHAT_DB_DIR`."""
    override = os.environ.get(DB_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "db"


def load_layout(
    db_dir: Path | None = None,
    *,
    migrations_dir: Path | None = None,
    policies_dir: Path | None = None,
    functions_dir: Path | None = None,
) -> Layout:
    """Read `migrations/`, `functions/` and `policies/` under `db_dir` (each overridable)."""
    base = db_dir or default_db_dir()
    migrations_dir = migrations_dir or base / "migrations"
    policies_dir = policies_dir or base / "policies"
    functions_dir = functions_dir or base / "functions"
    if not migrations_dir.is_dir():
        raise MigrationError(f"no migrations directory at {migrations_dir}")
    files: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(
                f"{path}: not a migration file name (NNNN_name.up|down|verify.sql)"
            )
        version, name, kind = int(match[1]), match[2], match[3]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"{migrations_dir}: two migrations numbered {version:04d}")
        files.setdefault(version, {})[kind] = path
    migrations = []
    for version in sorted(files):
        parts = files[version]
        label = f"{version:04d}_{names[version]}"
        if version == 0:
            raise MigrationError(f"{label}: migration numbers start at 0001")
        if "up" not in parts or "down" not in parts:
            raise MigrationError(f"{label}: every migration needs an .up.sql and a .down.sql")
        migrations.append(
            Migration(version, names[version], parts["up"], parts["down"], parts.get("verify"))
        )
    roles: Path | None = None
    policies: list[PolicyFile] = []
    if policies_dir.is_dir():
        for path in sorted(policies_dir.glob("*.sql")):
            if path.name == ROLES_FILE:
                roles = path
            else:
                policies.append(PolicyFile(path))
    functions: list[PolicyFile] = []
    if functions_dir.is_dir():
        functions = [PolicyFile(path) for path in sorted(functions_dir.glob("*.sql"))]
    return Layout(tuple(migrations), tuple(policies), roles, tuple(functions))


# --- where it goes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One database to act on, as its DBA."""

    name: str
    admin_url: str
    legacy_organisation_id: int | None = None
    legacy_timezone: str | None = None


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL (or key=value conninfo) with any password replaced by `***`."""
    if "://" not in url:
        return _PASSWORD_KV.sub(r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        auth, _, hosts = netloc.rpartition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        netloc = f"{auth}@{hosts}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query, flags=re.IGNORECASE)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _password_of(url: str) -> str | None:
    if "://" not in url:
        match = _PASSWORD_KV.search(url)
        return match[2].strip("'") if match else None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _database_name(url: str) -> str:
    if "://" in url:
        path = urlsplit(url).path.lstrip("/")
        return unquote(path) or "database"
    match = re.search(r"dbname\s*=\s*(\S+)", url)
    return match[1].strip("'") if match else "database"


def target_for_url(
    url: str, *, legacy_organisation_id: int | None = None, legacy_timezone: str | None = None
) -> Target:
    return Target(_database_name(url), url, legacy_organisation_id, legacy_timezone)


def load_registry(path: Path) -> list[Target]:
    """The `[[databases]]` of a registry file (vechat_rls.registry), as targets of the DBA."""
    try:
        entries = registry.load(path).entries
        return [
            Target(e.name, e.require_admin_url(), e.legacy_owner, e.legacy_timezone)
            for e in entries
        ]
    except registry.RegistryError as exc:
        raise CliError(str(exc), 2) from None


def targets_from_args(args: argparse.Namespace) -> list[Target]:
    """`--database-url`, `--all` (the registry) or `$VECHAT_ADMIN_DATABASE_URL`.

    With `--all`, a database's own legacy owner in the registry (`legacy_organisation_id`, else
    its only organisation) and `legacy_timezone` win over the command-line values, which are
    only the default for entries that have none.
    """
    legacy_org = getattr(args, "legacy_organisation_id", None)
    legacy_tz = getattr(args, "legacy_timezone", None)
    if legacy_org is not None and legacy_org <= 0:
        raise CliError(f"--legacy-organisation-id must be an integer > 0, not {legacy_org}", 2)
    if getattr(args, "all", False):
        path = os.environ.get(REGISTRY_ENV)
        if not path:
            raise CliError(f"--all needs ${REGISTRY_ENV} (a TOML file of [[databases]])", 2)
        targets = load_registry(Path(path))
        return [
            Target(
                t.name,
                t.admin_url,
                t.legacy_organisation_id or legacy_org,
                t.legacy_timezone or legacy_tz,
            )
            for t in targets
        ]
    url = getattr(args, "database_url", None) or os.environ.get(ADMIN_URL_ENV)
    if not url:
        raise CliError(f"no database: give --database-url, --all, or set ${ADMIN_URL_ENV}", 2)
    return [target_for_url(url, legacy_organisation_id=legacy_org, legacy_timezone=legacy_tz)]


# --- talking to a database -----------------------------------------------------------------------


def _one_line(exc: BaseException, target: Target) -> str:
    """The first meaningful line of an error, without a password in it."""
    text = str(exc).strip()
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    password = _password_of(target.admin_url)
    if password and len(password) >= 3:  # a one-letter "password" would mangle the message
        line = line.replace(password, "***")
    return line


def _sql_error(exc: psycopg.Error, where: str, text: str, target: Target) -> MigrationError:
    diag = exc.diag
    message = diag.message_primary or _one_line(exc, target)
    position = diag.statement_position
    location = ""
    if position and position.isdigit():
        location = f" line {text.count(chr(10), 0, int(position) - 1) + 1}"
    context = ""
    if diag.context:
        context = " (" + diag.context.strip().splitlines()[0] + ")"
    state = f" [{diag.sqlstate}]" if diag.sqlstate else ""
    return MigrationError(f"{where}{location}: {message}{context}{state}")


@contextmanager
def admin_connection(target: Target) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection as the DBA; a one-line MigrationError if it cannot be opened."""
    try:
        conn = psycopg.connect(
            target.admin_url, autocommit=True, connect_timeout=10, application_name="vechat-rls"
        )
    except psycopg.Error as exc:
        raise MigrationError(
            f"cannot connect to {mask_url(target.admin_url)}: {_one_line(exc, target)}"
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def fetch_rows(target: Target, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
    """Run read-only queries in one transaction as the DBA; each query's rows as dicts."""
    with admin_connection(target) as conn:
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                results = []
                for statement in statements:
                    cur.execute(statement.encode())
                    results.append(cur.fetchall())
                return results
        except psycopg.Error as exc:
            raise MigrationError(_one_line(exc, target)) from None


@contextmanager
def _runner_lock(conn: psycopg.Connection[Any], target: Target) -> Iterator[None]:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    if not row or not row[0]:
        raise MigrationError(f"another migration is running on {mask_url(target.admin_url)}")
    try:
        yield
    finally:
        # Closing the connection releases the lock too: a broken connection needs no unlock.
        with suppress(psycopg.Error):
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


# --- the ledger ----------------------------------------------------------------------------------

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


# --- doing it ------------------------------------------------------------------------------------

Say = Callable[[str], None]


# The runner owns the transaction: a file that ends it would commit half a migration.
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK)\s*;", re.IGNORECASE | re.MULTILINE
)


def _run_file(
    conn: psycopg.Connection[Any], path: Path, target: Target, where: str | None = None
) -> None:
    text = path.read_text()
    control = _TRANSACTION_CONTROL.search(text)
    if control:
        raise MigrationError(
            f"{where or path.name}: remove {control[1].upper()}: the runner wraps each file in its "
            "own transaction"
        )
    try:
        conn.execute(text.encode())
    except psycopg.Error as exc:
        raise _sql_error(exc, where or path.name, text, target) from None


def act_as_owner(conn: psycopg.Connection[Any], target: Target) -> None:
    """Inside a transaction: act as vechat_owner, so every object created is owned by it."""
    conn.execute(f"SET LOCAL ROLE {OWNER_ROLE}")
    conn.execute("SET LOCAL search_path = public, vechat")
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    if target.legacy_organisation_id is not None:
        conn.execute(
            "SELECT set_config('vechat.legacy_organisation_id', %s, true)",
            (str(target.legacy_organisation_id),),
        )
    if target.legacy_timezone is not None:
        conn.execute(
            "SELECT set_config('vechat.legacy_timezone', %s, true)", (target.legacy_timezone,)
        )


def _as_dba(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET LOCAL ROLE NONE")


def bootstrap(conn: psycopg.Connection[Any], layout: Layout, target: Target) -> None:
    """Roles (00_roles.sql) and the ledger, as the DBA; idempotent."""
    with conn.transaction():
        if layout.roles is not None:
            _run_file(conn, layout.roles, target, f"policies/{layout.roles.name}")
        try:
            conn.execute(LEDGER_SQL.encode())
        except psycopg.Error as exc:
            raise _sql_error(exc, "the migration ledger", LEDGER_SQL, target) from None


def check_can_become_owner(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT to_regrole(%s) IS NOT NULL AND pg_has_role(current_user, %s, 'MEMBER')",
        (OWNER_ROLE, OWNER_ROLE),
    ).fetchone()
    if not row or not row[0]:
        raise MigrationError(
            f"role {OWNER_ROLE} is missing or the DBA cannot SET ROLE to it "
            f"(db/policies/{ROLES_FILE} should have granted it)"
        )


def run_migration_files(
    conn: psycopg.Connection[Any], migration: Migration, target: Target
) -> None:
    """The migration's up file and its verify step, in the caller's transaction and role."""
    _run_file(conn, migration.up, target)
    if migration.verify is not None:
        _run_file(conn, migration.verify, target)


def run_down_file(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    _run_file(conn, migration.down, target)


def apply_migration(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    with conn.transaction():
        act_as_owner(conn, target)
        run_migration_files(conn, migration, target)
        _as_dba(conn)
        conn.execute(
            "INSERT INTO vechat.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )


def revert_migration(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    with conn.transaction():
        act_as_owner(conn, target)
        run_down_file(conn, migration, target)
        _as_dba(conn)
        conn.execute(
            "DELETE FROM vechat.schema_migrations WHERE version = %s", (migration.version,)
        )
        # The functions and policies of the remaining schema are re-applied by the next migrate.
        conn.execute("DELETE FROM vechat.schema_policy_files")
        conn.execute("DELETE FROM vechat.schema_function_files")


def apply_repeatables(
    conn: psycopg.Connection[Any],
    layout: Layout,
    functions: Sequence[PolicyFile],
    policies: Sequence[PolicyFile],
    target: Target,
) -> None:
    """Functions, then policies, in one transaction as vechat_owner, and their ledger rows."""
    with conn.transaction():
        act_as_owner(conn, target)
        for function in functions:
            _run_file(conn, function.path, target, f"functions/{function.name}")
        for policy in policies:
            _run_file(conn, policy.path, target, f"policies/{policy.name}")
        _as_dba(conn)
        for table, files, known in (
            ("schema_function_files", functions, layout.functions),
            ("schema_policy_files", policies, layout.policies),
        ):
            for file in files:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO vechat.{} (file_name, checksum) VALUES (%s, %s) "
                        "ON CONFLICT (file_name) DO UPDATE "
                        "SET checksum = excluded.checksum, applied_at = now()"
                    ).format(sql.Identifier(table)),
                    (file.name, file.checksum),
                )
            conn.execute(
                sql.SQL("DELETE FROM vechat.{} WHERE NOT file_name = ANY(%s)").format(
                    sql.Identifier(table)
                ),
                ([f.name for f in known],),
            )


UP_TO_DATE = "functions and policies up to date"


def _names(files: Sequence[PolicyFile]) -> str:
    return ", ".join(p.name for p in files)


def migrate(
    target: Target, layout: Layout, say: Say, *, to: int | None = None, dry_run: bool = False
) -> None:
    """Apply pending migrations (up to `to`), then changed function and policy files."""
    if to is not None and to not in {0, *layout.by_version()}:
        raise MigrationError(f"--to {to}: there is no migration {to:04d}")
    with admin_connection(target) as conn, _runner_lock(conn, target):
        ledger = read_ledger(conn)
        check_ledger(layout, ledger)
        if to is not None and to < ledger.current:
            raise MigrationError(
                f"the database is at {ledger.current:04d}, past --to {to:04d}: use db rollback"
            )
        todo = pending_migrations(layout, ledger, to)
        at_head = to is None or to >= layout.head
        policies = stale_policies(layout, ledger, all_of_them=bool(todo)) if at_head else []
        functions = stale_functions(layout, ledger, all_of_them=bool(todo)) if at_head else []
        # A database with the legacy VeChat tables and no 0001 is adopted in place (legacy.py).
        shape = legacy.detect(conn) if todo and todo[0].version == 1 else None
        if dry_run:
            roles = f" after {ROLES_FILE}" if layout.roles else ""
            for migration in todo:
                if shape is not None and migration is todo[0]:
                    found = legacy.plan(conn, shape, migration, target, say)
                    if found:
                        raise MigrationError(
                            f"dry run: adoption would be refused ({len(found)} problem(s) above); "
                            "nothing was changed"
                        )
                    continue
                say(f"would apply {migration.label}{roles}")
            if functions:
                say(f"would apply functions: {_names(functions)}")
            if policies:
                say(f"would apply policies: {_names(policies)}")
            if not todo and not policies and not functions:
                say(f"nothing to do: at {_at(layout, ledger.current)}, {UP_TO_DATE}")
            return
        if shape is None:
            bootstrap(conn, layout, target)
            check_can_become_owner(conn)
        for migration in todo:
            started = time.monotonic()
            if shape is not None and migration is todo[0]:
                # Roles and ledger inside the adoption's transaction: a refusal leaves nothing.
                legacy.adopt(conn, shape, migration, layout, target, say)
            else:
                apply_migration(conn, migration, target)
            say(f"applied {migration.label} ({time.monotonic() - started:.2f} s)")
        if functions or policies:
            started = time.monotonic()
            apply_repeatables(conn, layout, functions, policies, target)
            elapsed = f"({time.monotonic() - started:.2f} s)"
            if functions:
                say(f"applied functions: {_names(functions)}")
            if policies:
                say(f"applied policies: {_names(policies)}")
            say(f"repeatable files applied {elapsed}")
        current = max(ledger.current, *(m.version for m in todo)) if todo else ledger.current
        if not todo and not policies and not functions:
            say(f"nothing to do: at {_at(layout, current)}, {UP_TO_DATE}")
        else:
            say(f"now at {_at(layout, current)}")


def rollback(target: Target, layout: Layout, say: Say, *, to: int, dry_run: bool = False) -> None:
    """Run the downs of every applied migration above `to`, newest first."""
    if to < 0:
        raise MigrationError("--to must be 0 or a migration number")
    with admin_connection(target) as conn, _runner_lock(conn, target):
        ledger = read_ledger(conn)
        unknown = unknown_migrations(layout, ledger)
        if any(a.version > to for a in unknown):
            raise MigrationError(
                f"migration {unknown[-1].label} is applied but has no files here: "
                "cannot roll it back"
            )
        files = layout.by_version()
        todo = [files[v] for v in sorted(ledger.migrations, reverse=True) if v > to]
        if not todo:
            say(f"nothing to roll back: at {_at(layout, ledger.current)}")
            return
        adoption = legacy.read_adoption(conn) if 1 in ledger.migrations else None
        for migration in todo:
            adopted = adoption is not None and migration.version == 1
            if dry_run:
                if adopted and adoption is not None:
                    legacy.restore_plan(conn, adoption, migration, say)
                else:
                    say(f"would roll back {migration.label}")
                continue
            started = time.monotonic()
            if adopted and adoption is not None:
                legacy.restore(conn, adoption, migration, target, say)
            else:
                revert_migration(conn, migration, target)
            say(f"rolled back {migration.label} ({time.monotonic() - started:.2f} s)")
        if not dry_run:
            say(f"now at {_at(layout, to)}")


def _at(layout: Layout, version: int) -> str:
    if version == 0:
        return "0000 (no migration applied)"
    migration = layout.by_version().get(version)
    return migration.label if migration else f"{version:04d}"


def status(target: Target, layout: Layout, say: Say) -> bool:
    """List applied, changed, unknown and pending migrations and policies; False if any is off."""
    with admin_connection(target) as conn:
        ledger = read_ledger(conn)
        adopted = legacy.status_note(conn) if 1 in ledger.migrations else None
    files = layout.by_version()
    changed = {m.version for m in changed_migrations(layout, ledger)}
    for version in sorted(set(files) | set(ledger.migrations)):
        applied = ledger.migrations.get(version)
        if applied is None:
            say(f"pending  {files[version].label}")
            continue
        when = f"{applied.applied_at:%Y-%m-%d %H:%M:%S%z} by {applied.applied_by}"
        if version not in files:
            say(f"unknown  {applied.label}  applied {when}; no such file in this release")
        elif version in changed:
            say(f"CHANGED  {applied.label}  applied {when}; the file differs from what was applied")
        else:
            note = f"; {adopted}" if adopted and version == 1 else ""
            say(f"applied  {applied.label}  {when}{note}")
    for tier, tier_files, stale in (
        ("functions", layout.functions, stale_functions(layout, ledger)),
        ("policies", layout.policies, stale_policies(layout, ledger)),
    ):
        say(
            f"{tier}: {len(tier_files) - len(stale)} of {len(tier_files)} applied as they are"
            + (f"; to apply: {_names(stale)}" if stale else "")
        )
    pending = pending_migrations(layout, ledger)
    say(f"at {_at(layout, ledger.current)}; {len(pending)} pending")
    return not changed and not unknown_migrations(layout, ledger)


# --- verify: the deployment guide's checks, and more ---------------------------------------------

ORGANISATION_COLUMNS_SQL = """
SELECT table_name, column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_schema = 'public'
  AND table_name IN ('vechat_conversations', 'vechat_messages',
                     'vechat_presence', 'vechat_user_settings')
  AND column_name = 'organisation_id'
ORDER BY table_name
"""

TENANT_TABLES_SQL = r"""
SELECT c.relname AS table_name,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       EXISTS (SELECT FROM pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'organisation_id' AND NOT a.attisdropped)
           AS has_organisation_id
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'vechat\_%'
ORDER BY c.relname
"""

WHO_AM_I_SQL = (
    "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)

COUNT_SQL = "SELECT count(*) AS total, count(organisation_id) AS with_organisation FROM public.{}"

HAS_AUDIT_SQL = "SELECT to_regprocedure('vechat_audit.findings()') IS NOT NULL"
FINDINGS_COUNT_SQL = "SELECT count(*) FROM vechat_audit.findings()"


@dataclass
class Checks:
    """A verify report: one line per check, with the details under it."""

    say: Say
    passed: int = 0
    failed: int = 0

    def check(self, ok: bool, title: str, details: Sequence[str] = ()) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.say(f"{'ok  ' if ok else 'FAIL'}  {title}")
        for line in details:
            self.say(f"        {line}")


def verify(target: Target, layout: Layout, say: Say) -> bool:
    """The deployment guide's checks plus ledger, RLS and audit state; False if any check fails."""
    checks = Checks(say)
    with admin_connection(target) as conn:
        ledger = read_ledger(conn)
        changed = changed_migrations(layout, ledger)
        unknown = unknown_migrations(layout, ledger)
        pending = pending_migrations(layout, ledger)
        checks.check(
            ledger.exists and not changed and not unknown and not pending,
            f"migrations: at {_at(layout, ledger.current)} of {_at(layout, layout.head)}",
            [f"changed since applied: {m.label}" for m in changed]
            + [f"applied, unknown to this release: {a.label}" for a in unknown]
            + [f"pending: {m.label}" for m in pending],
        )
        for tier, files, stale in (
            ("functions", layout.functions, stale_functions(layout, ledger)),
            ("policies", layout.policies, stale_policies(layout, ledger)),
        ):
            checks.check(
                not stale,
                f"{tier}: {len(files) - len(stale)} of {len(files)} files applied as they are",
                [f"not applied as it is: {p.name}" for p in stale],
            )

        adoption = legacy.verify_report(conn) if ledger.exists else None
        if adoption is not None:
            checks.check(*adoption)

        # The old deployment guide's own queries, as it printed them.
        columns = conn.execute(ORGANISATION_COLUMNS_SQL).fetchall()
        checks.check(
            len(columns) == len(ORIGINAL_TABLES),
            f"organisation_id in the four original tables: {len(columns)} rows "
            f"(expected {len(ORIGINAL_TABLES)})",
            [f"{t}.{c}  {d}  {'NULL' if n == 'YES' else 'NOT NULL'}" for t, c, d, n in columns]
            + [f"missing: {t}" for t in ORIGINAL_TABLES if t not in {row[0] for row in columns}],
        )

        tables = conn.execute(TENANT_TABLES_SQL).fetchall()
        who = conn.execute(WHO_AM_I_SQL).fetchone()
        user, superuser, bypass = who if who else ("?", False, False)
        if superuser or bypass:
            details, ok = [], True
            for name, _enabled, _forced, has_org in tables:
                if not has_org:
                    details.append(f"{name}: no organisation_id column")
                    ok = False
                    continue
                row = conn.execute(sql.SQL(COUNT_SQL).format(sql.Identifier(name))).fetchone()
                total, with_org = row if row else (0, 0)
                ok = ok and total == with_org
                details.append(f"{name}: {total} rows, {with_org} with an organisation")
            why = "a superuser" if superuser else "BYPASSRLS"
            checks.check(
                ok,
                f"rows with an organisation (counted as {user}, {why}: "
                "row-level security hides nothing)",
                details,
            )
        else:
            say(
                f"skip  rows with an organisation: {user} is subject to row-level security and "
                "would count 0; run verify as a superuser"
            )

        off = [
            f"{n}: {'enabled' if e else 'NOT enabled'}, {'forced' if f else 'NOT forced'}"
            for n, e, f, _o in tables
            if not (e and f)
        ]
        checks.check(
            bool(tables) and not off,
            f"row-level security enabled and forced: {len(tables) - len(off)} of "
            f"{len(tables)} public.vechat_% tables",
            off,
        )

        row = conn.execute(HAS_AUDIT_SQL).fetchone()
        if not (row and row[0]):
            checks.check(False, "isolation audit: schema vechat_audit is missing")
        else:
            row = conn.execute(FINDINGS_COUNT_SQL).fetchone()
            findings = row[0] if row else 0
            checks.check(
                findings == 0,
                f"isolation audit: {findings} findings"
                + (" (details: vechat-rls audit)" if findings else ""),
            )
    say(f"verify: {checks.passed} passed, {checks.failed} failed")
    return checks.failed == 0


# --- the command line ----------------------------------------------------------------------------


@dataclass
class TargetReport:
    """Prints one target's lines, indented under a header when there are several targets."""

    target: Target
    many: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def begin(self) -> None:
        if self.many:
            print(
                f"[{self.target.name}] {mask_url(self.target.admin_url)}", file=self.out, flush=True
            )

    def say(self, line: str) -> None:
        print(("  " if self.many else "") + line, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        prefix = f"{self.target.name}: " if self.many else ""
        print(f"vechat-rls: {prefix}{message}", file=self.err, flush=True)


Action = Callable[[Target, Say], bool | None]


# Exit codes of `db …` and `audit` (contract): with several databases, the highest of them.
EXIT_OK = 0
EXIT_FINDING = 1  # a check failed: an isolation finding, a changed or pending migration
EXIT_USAGE = 2  # bad usage or input (CliError's default)
EXIT_FAILED = 3  # a database could not be reached, or a step failed (and was rolled back)


def run_each(targets: Sequence[Target], action: Action) -> int:
    """Run `action` on every target; one failing target does not stop the others. Exit status:
    EXIT_FAILED if any target failed, else EXIT_FINDING if any check failed, else EXIT_OK."""
    failed: list[str] = []
    findings: list[str] = []
    many = len(targets) > 1
    for target in targets:
        report = TargetReport(target, many)
        report.begin()
        try:
            ok = action(target, report.say)
        except MigrationError as exc:
            report.fail(str(exc))
            failed.append(target.name)
            continue
        except psycopg.Error as exc:  # a query of ours failed: still one line, never a traceback
            report.fail(_one_line(exc, target))
            failed.append(target.name)
            continue
        except OSError as exc:
            report.fail(f"{exc.filename or ''}: {exc.strerror or exc}")
            failed.append(target.name)
            continue
        if ok is False:
            findings.append(target.name)
    if many:
        good = len(targets) - len(failed) - len(findings)
        summary = f"{good} of {len(targets)} databases ok"
        if findings:
            summary += f"; checks failed: {', '.join(findings)}"
        if failed:
            summary += f"; could not be done: {', '.join(failed)}"
        print(summary, flush=True)
    if failed:
        return EXIT_FAILED
    return EXIT_FINDING if findings else EXIT_OK


def run_cli(args: argparse.Namespace) -> int:
    """`vechat-rls db migrate|rollback|status|verify`."""
    targets = targets_from_args(args)
    try:
        layout = load_layout()
    except MigrationError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    command = args.db_command
    if command == "migrate":
        return run_each(
            targets, lambda t, say: migrate(t, layout, say, to=args.to, dry_run=args.dry_run)
        )
    if command == "rollback":
        return run_each(
            targets, lambda t, say: rollback(t, layout, say, to=args.to, dry_run=args.dry_run)
        )
    if command == "status":
        return run_each(targets, lambda t, say: status(t, layout, say))
    if command == "verify":
        return run_each(targets, lambda t, say: verify(t, layout, say))
    raise CliError(f"unknown db command {command!r}")
