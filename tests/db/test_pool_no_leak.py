"""No leak through pooling: interleaved tenant transactions over 2 connections stay in their tenant.

The application's own pool (`vechat_rls.db.create_pool`, which skips the reset query on release)
and tenant transaction (`vechat_rls.db.tenant`) carry 10,000 transactions of two organisations
whose users have the very same id. Every transaction must see its own organisation's rows and no
other, including right after a transaction of the other organisation failed on that connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Iterator

import asyncpg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database
from tests.support.postgres import TestPostgres
from tests.support.seed import P1
from vechat_rls.db import create_pool, tenant
from vechat_rls.identity import Identity

pytestmark = pytest.mark.db

TRANSACTIONS = 10_000
WORKERS = 8  # more tasks than connections: each connection alternates between organisations

VISIBLE_SQL = """
SELECT vechat.current_organisation_id() AS context,
       pg_backend_pid() AS pid,
       (SELECT array_agg(DISTINCT organisation_id) FROM vechat_messages) AS message_orgs,
       (SELECT count(*) FROM vechat_messages) AS messages,
       (SELECT array_agg(DISTINCT organisation_id) FROM vechat_contacts) AS contact_orgs
"""


class Planned(Exception):
    """Raised inside a tenant block to make it roll back."""


@pytest.fixture(scope="module")
def world(
    migrated_database: Database, postgres: TestPostgres
) -> Iterator[tuple[str, list[int]]]:
    database = migrated_database.name
    with h.organisations(postgres, database, 2) as ids:
        with h.admin_connect(postgres, database) as conn:
            for o in ids:
                h.seed_organisation(conn, o)
            conn.commit()
        yield postgres.app_url(database, password=h.APP_PASSWORD), ids


async def test_interleaved_transactions_of_two_organisations_see_only_their_own(
    world: tuple[str, list[int]],
) -> None:
    url, organisations = world
    identities = [
        Identity(organisation_id=o, user_id=P1.user_id, user_type="personnel")
        for o in organisations
    ]
    pool = await create_pool(url, max_size=2)
    jobs = itertools.count()
    served: dict[int, set[int]] = defaultdict(set)  # backend pid -> organisations it served
    outcomes: dict[str, int] = defaultdict(int)

    async def one(n: int) -> None:
        identity = identities[(n * 7 + n // 3) % 2]  # irregular, but both in every stretch
        o = identity.organisation_id
        try:
            async with tenant(pool, identity, readonly=n % 5 == 0) as conn:
                row = await conn.fetchrow(VISIBLE_SQL)
                assert row is not None
                assert row["context"] == o, n
                assert row["message_orgs"] == [o] and row["messages"] == 3, n
                assert row["contact_orgs"] == [o], n
                served[row["pid"]].add(o)
                if n % 97 == 0:
                    raise Planned  # rolled back by tenant()
                if n % 89 == 0:
                    await conn.execute("SELECT 1 / 0")  # the server aborts the transaction
            outcomes["committed"] += 1
        except Planned:
            outcomes["rolled_back"] += 1
        except asyncpg.DivisionByZeroError:
            outcomes["failed"] += 1

    async def worker() -> None:
        while (n := next(jobs)) < TRANSACTIONS:
            await one(n)

    try:
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        # Both connections, taken from the pool outside tenant(), have no context left at all.
        async with pool.acquire() as first, pool.acquire() as second:
            for conn in (first, second):
                assert await conn.fetchval("SELECT vechat.current_organisation_id()") is None
                assert await conn.fetchval("SELECT count(*) FROM vechat_messages") == 0
    finally:
        await pool.close()

    assert sum(outcomes.values()) == TRANSACTIONS
    assert outcomes["rolled_back"] > 50 and outcomes["failed"] > 50
    assert len(served) == 2, "the pool should have used exactly its 2 connections"
    assert all(orgs == set(organisations) for orgs in served.values()), served
