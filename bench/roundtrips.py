"""Transactions per second of tenant-transaction variants against a plain insert (one process).

Starts a private PostgreSQL (fsync off unless --durable; or uses --database-url, a superuser URL),
creates a forced-RLS table and an RLS-bound role, and runs the variants in interleaved rounds with
--tasks concurrent tasks over a pool of --pool connections. Each transaction inserts one row.
Baseline, in the same rounds: an autocommit INSERT as a role that bypasses RLS (one round trip,
the physical floor). Prints each variant's median tx/s and its ratio to the baseline.

    .venv/bin/python bench/roundtrips.py [--rounds 5] [--seconds 1] [--tasks 16] [--pool 8]
                                         [--durable] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import psycopg

from harness.cluster import create_database, private_cluster, role_url, workdir
from harness.meters import closed_tasks
from harness.report import Column, Table
from vechat_rls import db
from vechat_rls.identity import Identity

ROLE = "bench_app"
SETUP = f"""
DROP TABLE IF EXISTS public.vechat_bench;
CREATE TABLE public.vechat_bench (
    organisation_id bigint NOT NULL, user_id bigint NOT NULL, body text NOT NULL);
CREATE INDEX ON public.vechat_bench (organisation_id);
ALTER TABLE public.vechat_bench ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_bench FORCE ROW LEVEL SECURITY;
CREATE POLICY vechat_bench_isolation ON public.vechat_bench
    USING (organisation_id =
           (SELECT nullif(current_setting('vechat.organisation_id', true), '')::bigint));
DO $$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} LOGIN NOBYPASSRLS PASSWORD '{ROLE}';
    END IF;
END$$;
GRANT SELECT, INSERT ON public.vechat_bench TO {ROLE};
"""
INSERT = "INSERT INTO public.vechat_bench (organisation_id, user_id, body) VALUES ($1, $2, $3)"
IDENTITY = Identity(organisation_id=7, user_id=42, user_type="personnel", role="admin")
SET_CONTEXT = (
    "SELECT set_config('vechat.organisation_id', $1, true), set_config('vechat.user_id', $2, true),"
    " set_config('vechat.user_type', $3, true), set_config('vechat.role', $4, true),"
    " set_config('statement_timeout', $5, true)"
)

Variant = Callable[[Any], Awaitable[None]]
RESULTS = Table(Column("variant", 58, left=True, gap=""), Column("tx/s", 9, ".0f", unit=" tx/s"),
                Column("vs baseline", 5, ".2f", unit="x", gap="  "))


async def baseline(pool: Any) -> None:
    """1 round trip: autocommit INSERT as a role that bypasses RLS (the physical floor)."""
    async with pool.acquire() as conn:
        await conn.execute(INSERT, 7, 42, "hello")


async def tenant_one_round_trip_begin(pool: Any) -> None:
    """3 round trips: BEGIN + SET LOCAL batch, INSERT, COMMIT (what db.tenant does)."""
    async with db.tenant(pool, IDENTITY, statement_timeout_ms=5000) as conn:
        await conn.execute(INSERT, 7, 42, "hello")


async def begin_then_set_config(pool: Any) -> None:
    """4 round trips: asyncpg transaction() BEGIN, prepared set_config, INSERT, COMMIT."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SET_CONTEXT, "7", "42", "personnel", "admin", "5000")
        await conn.execute(INSERT, 7, 42, "hello")


SET_CONFIG_BEGIN = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('vechat.organisation_id', '7', true), "
    "set_config('vechat.user_id', '42', true), set_config('vechat.user_type', 'personnel', true), "
    "set_config('vechat.role', 'admin', true), set_config('statement_timeout', '5000', true)"
)


async def set_config_batch(pool: Any) -> None:
    """3 round trips: `BEGIN; SELECT set_config(…) x5` batch (a SELECT to plan each time)."""
    async with pool.acquire() as conn:
        await conn.execute(SET_CONFIG_BEGIN)
        await conn.execute(INSERT, 7, 42, "hello")
        await conn.execute("COMMIT")


async def single_batch(pool: Any) -> None:
    """1 round trip: BEGIN, context, INSERT and COMMIT in one simple-protocol batch (the floor
    for a tenant transaction; needs literal values, so only for illustration)."""
    begin = db.begin_sql(IDENTITY, readonly=False, statement_timeout_ms=5000)
    async with pool.acquire() as conn:
        await conn.execute(
            begin + "; INSERT INTO public.vechat_bench VALUES (7, 42, 'hello'); COMMIT"
        )


async def run(variant: Variant, pool: Any, seconds: float, tasks: int) -> float:
    """Transactions per second of `tasks` tasks running `variant` back to back for `seconds`."""
    # open every connection of the pool and prepare the statements before the clock starts
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    for conn in conns:
        await pool.release(conn)
    await asyncio.gather(*(variant(pool) for _ in range(tasks)))
    return await closed_tasks(lambda _task, _n: variant(pool), tasks, seconds)


@contextlib.contextmanager
def database(url: str | None, durable: bool) -> Iterator[str]:
    """`url`, or an empty database on a private cluster of our own: a superuser URL."""
    if url:
        yield url
        return
    with workdir("roundtrips") as work, private_cluster(work, durable=durable) as pg:
        yield create_database(pg)


async def main_async(args: argparse.Namespace, admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(SETUP.encode())
    app_url = role_url(admin_url, ROLE, ROLE)
    admin_pool = await asyncpg.create_pool(admin_url, min_size=args.pool, max_size=args.pool)
    app_pool = await db.create_pool(app_url, min_size=0, max_size=args.pool)
    default_reset_pool = await asyncpg.create_pool(app_url, min_size=args.pool, max_size=args.pool)
    variants: list[tuple[str, Variant, Any]] = [
        ("baseline: autocommit INSERT, no RLS (1 RT)", baseline, admin_pool),
        (
            "db.tenant(): BEGIN+SET LOCAL batch, INSERT, COMMIT (3 RT)",
            tenant_one_round_trip_begin,
            app_pool,
        ),
        (
            "  same, with asyncpg's default reset on release (4 RT)",
            tenant_one_round_trip_begin,
            default_reset_pool,
        ),
        ("BEGIN; set_config; INSERT; COMMIT (4 RT)", begin_then_set_config, app_pool),
        ("BEGIN+SELECT set_config batch, INSERT, COMMIT (3 RT)", set_config_batch, app_pool),
        ("everything in one batch (1 RT, illustration)", single_batch, app_pool),
    ]
    print(
        f"{args.tasks} tasks, pool {args.pool}, median of {args.rounds} x {args.seconds:g} s, "
        f"{'durable' if args.durable else 'fsync off'} server"
    )
    # Interleaved rounds, median per variant: the machine is shared, so load drifts over time.
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(args.rounds):
        for name, variant, pool in variants:
            rates[name].append(await run(variant, pool, args.seconds, args.tasks))
    base = statistics.median(rates[variants[0][0]])
    for name, _, _ in variants:
        rate = statistics.median(rates[name])
        print(RESULTS.row(name, rate, rate / base))
    for pool in (admin_pool, app_pool, default_reset_pool):
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser URL (default: a private server)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--durable", action="store_true", help="fsync on (default: off)")
    args = parser.parse_args()
    with database(args.database_url, args.durable) as admin_url:
        asyncio.run(main_async(args, admin_url))


if __name__ == "__main__":
    main()
