"""Helpers for the registry-mode tests: migrated databases, registry files, who is connected."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg

from tests.support.fixtures import APP_PASSWORD, Database, migrate_to_head
from tests.support.postgres import TestPostgres

Placement = Sequence[int | str]  # organisation ids, or ["*"]

# Every connection serve opens: pools ('vechat-rls'), listeners and ringers ('vechat-rls …').
BACKENDS_SQL = """
SELECT datname::text, count(*)::int FROM pg_catalog.pg_stat_activity
WHERE datname = ANY($1::text[]) AND application_name LIKE 'vechat-rls%' AND application_name LIKE $2
GROUP BY 1
"""


def migrated_databases(postgres: TestPostgres, count: int, prefix: str = "fleet") -> list[Database]:
    made = []
    for _ in range(count):
        name = postgres.create_database(prefix)
        migrate_to_head(postgres.admin_url(name))
        made.append(
            Database(name, postgres.admin_url(name), postgres.app_url(name, password=APP_PASSWORD))
        )
    return made


def write_registry(path: Path, entries: Sequence[tuple[str, str, Placement]]) -> Path:
    """A registry file of `(name, url, organisations)` entries."""
    path.write_text(
        "".join(
            f'[[databases]]\nname = "{name}"\nurl = "{url}"\n'
            f"organisations = {json.dumps(list(organisations))}\n\n"
            for name, url, organisations in entries
        )
    )
    return path


async def backends(
    admin: asyncpg.Connection[asyncpg.Record], databases: Sequence[str], kind: str = "%"
) -> dict[str, int]:
    """Connections serve holds per database (`kind`: an application_name pattern)."""
    rows = await admin.fetch(BACKENDS_SQL, list(databases), kind)
    return {row[0]: row[1] for row in rows}


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)
