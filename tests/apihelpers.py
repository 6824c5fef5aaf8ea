"""Helpers for HTTP tests: the app against the session's migrated database, callers, snapshots.

Tests build the real app (`create_app`) on `migrated_database` as `vechat_app`, act through HTTP
with tokens minted here, seed and inspect as the superuser, and keep to their own organisations
(`dbhelpers.new_organisation_ids`), removed again by `purge_organisations`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from tests.conftest import Database
from tests.dbhelpers import TENANT_TABLES_SQL, User
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


def purge_organisations(admin_url: str, organisation_ids: Sequence[int]) -> None:
    """Delete every row of these organisations from every `vechat_` table (as the superuser).

    Triggers and foreign-key checks are off for it (`session_replication_role = replica`): all
    rows of the organisations go together, so nothing is left dangling.
    """
    with psycopg.connect(admin_url) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        for (table,) in conn.execute(TENANT_TABLES_SQL).fetchall():
            conn.execute(
                f"DELETE FROM public.{table} WHERE organisation_id = ANY(%s)",
                (list(organisation_ids),),
            )


Snapshot = dict[str, tuple[int, str]]


def snapshot(admin_url: str) -> Snapshot:
    """Row count and a checksum of the rows of every `public.vechat_*` table, as the superuser."""
    with psycopg.connect(admin_url) as conn:
        tables = [row[0] for row in conn.execute(TENANT_TABLES_SQL).fetchall()]
        result: Snapshot = {}
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
