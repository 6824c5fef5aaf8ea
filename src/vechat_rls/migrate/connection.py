"""Talking to one target as its DBA: connections, one-line errors, the runner's lock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.rows import dict_row

from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.targets import Target, mask_url, password_of

# pg_try_advisory_lock key of every runner: "vechat" in ASCII, then 1. Advisory locks are scoped to
# the current database, so runners on different databases of one server never wait for each other.
LOCK_KEY = 0x7665636861740001


def one_line(exc: BaseException, target: Target) -> str:
    """The first meaningful line of an error, without a password in it."""
    text = str(exc).strip()
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    password = password_of(target.admin_url)
    if password and len(password) >= 3:  # a one-letter "password" would mangle the message
        line = line.replace(password, "***")
    return line


def sql_error(exc: psycopg.Error, where: str, text: str, target: Target) -> MigrationError:
    diag = exc.diag
    message = diag.message_primary or one_line(exc, target)
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
            f"cannot connect to {mask_url(target.admin_url)}: {one_line(exc, target)}"
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
            raise MigrationError(one_line(exc, target)) from None


@contextmanager
def runner_lock(conn: psycopg.Connection[Any], target: Target) -> Iterator[None]:
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
