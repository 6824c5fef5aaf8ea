"""Helpers for HTTP tests: the app against the session's migrated database, callers, snapshots.

Tests build the real app (`create_app`) on `migrated_database` as `vechat_app`, act through HTTP
with tokens minted here, seed and inspect as the superuser, and keep to their own organisations
(`seed.new_organisation_ids`), removed again by `seed.purge_organisations`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from litestar.testing import AsyncTestClient

from tests.support.fixtures import Database
from tests.support.seed import TENANT_TABLES_SQL, User
from vechat_rls.api.app import create_app
from vechat_rls.auth import mint_token
from vechat_rls.config import Settings

SECRET = "api-test-secret-long-enough-for-hs256!"


def api_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "database_url": database_url,
        "pool_min": 0,
        "pool_max": 4,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def api_client(database: Database, **overrides: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    """A test client of the whole app, its pool logged in as `vechat_app`."""
    app = create_app(api_settings(database.app_url, **overrides))
    async with AsyncTestClient(app) as client:
        yield client


@dataclass(frozen=True)
class Caller:
    """Someone with a token: a user of one organisation."""

    organisation_id: int
    user_id: int
    user_type: str
    role: str | None = None
    name: str | None = None

    @property
    def user(self) -> User:
        return User(self.user_id, self.user_type, self.role)

    @property
    def participant(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "user_type": self.user_type}

    @property
    def headers(self) -> dict[str, str]:
        token = mint_token(
            key=SECRET,
            organisation_id=self.organisation_id,
            user_id=self.user_id,
            user_type=self.user_type,
            role=self.role,
            name=self.name,
        )
        return {"Authorization": f"Bearer {token}"}

    def __str__(self) -> str:
        return f"{self.user_type}:{self.user_id}@{self.organisation_id}"


TableChecksums = dict[str, tuple[int, str]]


def table_checksums(admin_url: str) -> TableChecksums:
    """Row count and a checksum of the rows of every `public.vechat_*` table, as the superuser."""
    with psycopg.connect(admin_url) as conn:
        tables = [row[0] for row in conn.execute(TENANT_TABLES_SQL).fetchall()]
        result: TableChecksums = {}
        for table in tables:
            row = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                f"FROM public.{table} t"
            ).fetchone()
            assert row is not None
            result[table] = (int(row[0]), str(row[1]))
    return result


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem with `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def wait_ready(
    base: str, proc: subprocess.Popen[Any], output: Callable[[], str], timeout: float = 30
) -> None:
    """Until `base`/readyz answers 200: a `vechat-rls serve` subprocess started by a test. Fails
    with the server's `output()` if it exits first, or when `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        assert proc.poll() is None, output()
        assert time.monotonic() < deadline, f"server did not become ready: {output()}"
        time.sleep(0.1)
