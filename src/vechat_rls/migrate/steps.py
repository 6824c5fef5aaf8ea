"""The runner's steps on one connection: files run as vechat_owner, roles and ledger, one
migration up or down, the repeatable tiers; each step in its own transaction unless the caller
holds one."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from vechat_rls.db import context
from vechat_rls.migrate.connection import sql_error
from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.layout import ROLES_FILE, Layout, Migration, PolicyFile
from vechat_rls.migrate.ledger import LEDGER_SQL
from vechat_rls.migrate.targets import Target

OWNER_ROLE = "vechat_owner"
LOCK_TIMEOUT = "60s"  # how long a migration waits for a table lock held by live traffic


# --- doing it ------------------------------------------------------------------------------------

Say = Callable[[str], None]


# The runner owns the transaction: a file that ends it would commit half a migration.
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK)\s*;", re.IGNORECASE | re.MULTILINE
)


def run_file(
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
        raise sql_error(exc, where or path.name, text, target) from None


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


def as_dba(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET LOCAL ROLE NONE")


def bootstrap(conn: psycopg.Connection[Any], layout: Layout, target: Target) -> None:
    """Roles (00_roles.sql) and the ledger, as the DBA; idempotent."""
    with conn.transaction():
        if layout.roles is not None:
            run_file(conn, layout.roles, target, f"policies/{layout.roles.name}")
        try:
            conn.execute(LEDGER_SQL.encode())
        except psycopg.Error as exc:
            raise sql_error(exc, "the migration ledger", LEDGER_SQL, target) from None


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
    run_file(conn, migration.up, target)
    if migration.verify is not None:
        run_file(conn, migration.verify, target)


def run_down_file(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    run_file(conn, migration.down, target)


def apply_migration(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    with conn.transaction():
        act_as_owner(conn, target)
        run_migration_files(conn, migration, target)
        as_dba(conn)
        conn.execute(
            "INSERT INTO vechat.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )


def revert_migration(conn: psycopg.Connection[Any], migration: Migration, target: Target) -> None:
    with conn.transaction():
        act_as_owner(conn, target)
        run_down_file(conn, migration, target)
        as_dba(conn)
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
            run_file(conn, function.path, target, f"functions/{function.name}")
        for policy in policies:
            run_file(conn, policy.path, target, f"policies/{policy.name}")
        as_dba(conn)
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


# --- the context key -----------------------------------------------------------------------------

_KEY_TABLE_SQL = "SELECT to_regclass('vechat.context_keys') IS NOT NULL"
_KEY_CHECK_SQL = "SELECT vechat.context_mac(%s, 'vechat-rls key check')"
_KEY_KNOWN_SQL = "SELECT retired_at IS NOT NULL FROM vechat.context_keys WHERE key_id = %s"


def install_context_keys(conn: psycopg.Connection[Any], target: Target) -> list[str]:
    """Add the keys of `VECHAT_CONTEXT_KEY` that the database lacks (docs/dba.md); their ids.

    A key the database has under the same id must be the same key and not retired, else
    `MigrationError`: the service would sign contexts the database refuses.
    """
    text = os.environ.get(context.KEY_VARIABLE, "").strip()
    if not text:
        return []
    try:
        keys = context.parse_keys(text)
    except context.ContextKeyError as exc:
        raise MigrationError(str(exc)) from None
    added: list[str] = []
    with conn.transaction():
        row = conn.execute(_KEY_TABLE_SQL).fetchone()
        if not row or not row[0]:
            return []
        act_as_owner(conn, target)
        for key in keys:
            known = conn.execute(_KEY_KNOWN_SQL, (key.key_id,)).fetchone()
            if known is None:
                conn.execute("SELECT vechat.add_context_key(%s, %s)", (key.key_id, key.secret))
                added.append(key.key_id)
                continue
            if known[0]:
                raise MigrationError(
                    f"context key {key.key_id} of {context.KEY_VARIABLE} is retired in the "
                    "database: give the service a new key (docs/dba.md)"
                )
            mac = conn.execute(_KEY_CHECK_SQL, (key.key_id,)).fetchone()
            if not mac or mac[0] != key.mac("vechat-rls key check"):
                raise MigrationError(
                    f"context key {key.key_id} of {context.KEY_VARIABLE} is not the key the "
                    "database holds under that id"
                )
        as_dba(conn)
    return added
