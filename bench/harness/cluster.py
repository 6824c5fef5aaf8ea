"""A benchmark's own PostgreSQL: the private cluster, its database, roles and their URLs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from vechat_rls import migrate
from vechat_rls.db import context
from vechat_rls.pgserver import PgServer, embedded_bindir

DATABASE = "vechat_bench"
APP_ROLE = "vechat_app"
APP_PASSWORD = "bench-app"
BYPASS_ROLE = "vechat_bench_bypass"
BYPASS_PASSWORD = "bench-bypass"

BYPASS_ROLE_SQL = f"""
DO $$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BYPASS_ROLE}') THEN
        CREATE ROLE {BYPASS_ROLE} LOGIN BYPASSRLS;
    END IF;
END$$;
ALTER ROLE {BYPASS_ROLE} LOGIN BYPASSRLS PASSWORD '{BYPASS_PASSWORD}';
-- vechat_app's privileges, nothing more: the only difference is that policies are skipped.
GRANT {APP_ROLE} TO {BYPASS_ROLE};
ALTER ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}';
"""


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A temporary directory for one run (cluster, server logs), deleted after the block."""
    path = Path(tempfile.mkdtemp(prefix=f"vechat-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(
    directory: Path, *, durable: bool = True, settings: dict[str, str] | None = None
) -> Iterator[PgServer]:
    """The embedded PostgreSQL 18, a fresh cluster in `directory`, running for the block.

    `durable`: fsync, full-page writes and synchronous_commit on, as in production; otherwise
    all three off (fast, for what does not measure commits). `settings`: more server settings.
    """
    pg = PgServer(datadir=directory / "postgres", bindir=embedded_bindir(), fast=not durable,
                  settings=settings or {})
    try:
        pg.start()
        yield pg
    finally:
        pg.stop("fast")


def server_version(admin_url: str) -> str:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def create_database(pg: PgServer, name: str = DATABASE) -> str:
    """An empty database on `pg`; its superuser URL."""
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return pg.admin_url(name)


def migrated_database(pg: PgServer) -> str:
    """The benchmark database on `pg`, migrated as `vechat-rls db migrate` does, with
    vechat_app's password and a BYPASSRLS role holding vechat_app's privileges; its superuser URL.
    """
    admin_url = create_database(pg)
    # The run's context key: `db migrate` installs it, the servers it starts sign with it.
    os.environ.setdefault(context.KEY_VARIABLE, context.new_key("bench").text())
    migrate.migrate(migrate.Target(DATABASE, admin_url), migrate.load_layout(),
                    say=lambda _line: None)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(BYPASS_ROLE_SQL.encode())
    return admin_url


def role_url(admin_url: str, user: str, password: str, **settings: str) -> str:
    """`admin_url` as another role; `settings` become session settings (asyncpg passes unknown
    query parameters as server_settings)."""
    parts = urlsplit(admin_url)
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    query = "&".join([*filter(None, [parts.query]),
                      *(f"{key}={value}" for key, value in settings.items())])
    return urlunsplit(parts._replace(netloc=login, query=query))


def app_url(admin_url: str, **settings: str) -> str:
    """The database as vechat_app, the role `vechat-rls serve` runs as (policies apply)."""
    return role_url(admin_url, APP_ROLE, APP_PASSWORD, **settings)


def bypass_url(admin_url: str, **settings: str) -> str:
    """The database as the BYPASSRLS role: vechat_app's privileges, no policies."""
    return role_url(admin_url, BYPASS_ROLE, BYPASS_PASSWORD, **settings)


# The tenant context as it was before contexts were signed: the policies read settings. Only for
# the benchmark's A/B of the signed context's cost (bench/http_api.py), on a copy of its database.
UNSIGNED_CONTEXT_SQL = """
SET ROLE vechat_owner;
CREATE OR REPLACE VIEW vechat.context WITH (security_invoker = true) AS
SELECT NULLIF(pg_catalog.current_setting('vechat.organisation_id', true), '')::bigint
           AS organisation_id,
       NULLIF(pg_catalog.current_setting('vechat.user_id', true), '')::bigint AS user_id,
       NULLIF(pg_catalog.current_setting('vechat.user_type', true), '') AS user_type,
       NULLIF(pg_catalog.current_setting('vechat.role', true), '') AS role;
RESET ROLE;
"""


def unsigned_copy(pg: PgServer, admin_url: str, name: str = DATABASE + "_unsigned") -> str:
    """A copy of the (seeded) benchmark database whose policies trust plain settings, as before
    signed contexts; its superuser URL. Serve it with VECHAT_CONTEXT_MODE=settings."""
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {DATABASE}".encode())
    url = pg.admin_url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UNSIGNED_CONTEXT_SQL.encode())
    return url
