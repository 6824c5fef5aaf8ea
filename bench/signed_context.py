"""What the signed tenant context costs: CPU per message send, signed against settings (same run).

Starts a private PostgreSQL (fsync off: CPU is what is measured, not the disk), migrates it,
seeds one organisation, and copies the database with policies that trust plain settings, the way
contexts were set before they were signed (harness.cluster.unsigned_copy). Then, on one
connection each, in interleaved rounds, it sends messages through the API's own code
(`db.tenant` + `chat.messages.send_message`, the path of `POST .../messages`), and runs empty
tenant transactions (BEGIN + context + COMMIT). It reports the PostgreSQL backend's CPU and this
process's CPU per operation — CPU time, not rates: steady on a machine others share — and the
ratios signed / unsigned. The HTTP benchmark (bench/http_api.py) has the same A/B end to end.

    .venv/bin/python bench/signed_context.py [--sends 3000] [--rounds 5] [--idle 40]
                                             [--plan-cache-mode force_generic_plan]

`--idle N` first opens N more connections per mode, each entering a few contexts and then idle,
as the pools of a server leave them: the context table then holds a row per backend (and their
dead versions), which is what the policies' context reads meet in production.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from harness.cluster import (
    app_url,
    migrated_database,
    private_cluster,
    server_version,
    unsigned_copy,
    workdir,
)
from harness.meters import process_cpu
from harness.report import reproduce
from harness.seed import seed_organisations
from vechat_rls import db
from vechat_rls.chat.messages import MessageCreate, send_message
from vechat_rls.config import Settings
from vechat_rls.identity import Identity

SENDER = Identity(organisation_id=1, user_id=1, user_type="personnel")
HISTORY = 200  # messages in the conversation before measuring


async def per_op(database: db.Database, count: int, op: Callable[[int], Awaitable[None]]
                 ) -> tuple[float, float]:
    """(PostgreSQL backend CPU µs, this process's CPU µs) per call of `op`."""
    async with database.pool.acquire() as conn:
        pid = conn.get_server_pid()
    for n in range(50):  # plans cached, caches warm
        await op(-n - 1)
    pg, me = process_cpu(pid), time.process_time()
    for n in range(count):
        await op(n)
    return ((process_cpu(pid) - pg) / count * 1e6, (time.process_time() - me) / count * 1e6)


async def idle_connections(url: str, mode: str, count: int) -> db.Database:
    """`count` connections that each entered a few contexts, left open (idle)."""
    settings = Settings(database_url=url, pool_min=count, pool_max=count, context_mode=mode,
                        rate_limit_per_min=10**9)
    database = db.Database(settings)
    await database.open(warm_up=False)

    async def enter_a_few() -> None:
        for _ in range(5):
            async with database.tenant(SENDER, readonly=True) as conn:
                await conn.fetchval("SELECT 1")
                await asyncio.sleep(0.01)  # hold the connection: each task gets its own

    await asyncio.gather(*(enter_a_few() for _ in range(count)))
    return database


async def measure(urls: dict[str, str], conversation_id: int, sends: int, rounds: int,
                  idle: int = 0) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {}
    databases = {}
    others = []
    for mode, url in urls.items():
        settings = Settings(database_url=url, pool_min=0, pool_max=1, context_mode=mode,
                            rate_limit_per_min=10**9)
        databases[mode] = db.Database(settings)
        await databases[mode].open(warm_up=False)
        if idle:
            others.append(await idle_connections(url, mode, idle))
    try:
        for round_number in range(rounds):
            order = list(urls) if round_number % 2 == 0 else list(urls)[::-1]
            for mode in order:
                database = databases[mode]

                async def send(n: int, database: db.Database = database,
                               tag: str = f"{mode}-{round_number}") -> None:
                    data = MessageCreate(client_id=f"{tag}-{n}", body=f"bench {n}")
                    async with database.tenant(SENDER) as conn:
                        await send_message(conn, SENDER, conversation_id, data, database.settings)

                async def empty(_n: int, database: db.Database = database) -> None:
                    async with database.tenant(SENDER, readonly=True) as conn:
                        await conn.fetchval("SELECT 1")

                results.setdefault(f"send {mode}", []).append(await per_op(database, sends, send))
                results.setdefault(f"empty tx {mode}", []).append(
                    await per_op(database, sends, empty))
    finally:
        for database in [*databases.values(), *others]:
            await database.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=3000, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--idle", type=int, default=0,
                        help="more connections per mode that entered contexts (a server's pools)")
    parser.add_argument("--plan-cache-mode", help="experiment: plan_cache_mode of both sessions")
    args = parser.parse_args(argv)
    with workdir("signed") as work, private_cluster(work, durable=False) as pg:
        admin_url = migrated_database(pg)
        extra = {"plan_cache_mode": args.plan_cache_mode} if args.plan_cache_mode else {}
        # A conversation with a history, analyzed: from an empty table's statistics the planner
        # takes the (organisation, conversation, created_at) index for the last-message
        # foreign-key check of every send and reads the whole conversation, a cost that grows
        # with each message sent until autovacuum analyzes (docs/performance.md).
        conversations = seed_organisations(
            admin_url, 1, 1, 1, lambda p: [p],
            lambda seeder, org, conversation, p, c: seeder.history(org, conversation, p, c,
                                                                   HISTORY))
        urls = {"signed": app_url(admin_url, **extra),
                "settings": app_url(unsigned_copy(pg, admin_url), **extra)}
        results = asyncio.run(measure(urls, conversations[(1, 1, 1)], args.sends, args.rounds,
                                        args.idle))
        print(f"vechat-rls signed context: PostgreSQL {server_version(admin_url)}, one connection"
              f" per mode ({args.idle} more idle), {args.sends} operations x {args.rounds}"
              " interleaved rounds (median)")
        print(f"reproduce: {reproduce(__file__, argv)}\n")
        print(f"{'what':34} {'pg us/op':>9} {'py us/op':>9} {'total':>9}")
        medians = {}
        for label, runs in results.items():
            pg_us = statistics.median(r[0] for r in runs)
            py_us = statistics.median(r[1] for r in runs)
            medians[label] = (pg_us, py_us)
            print(f"{label:34} {pg_us:9.1f} {py_us:9.1f} {pg_us + py_us:9.1f}")
        print()
        for what in ("send", "empty tx"):
            signed, plain = medians[f"{what} signed"], medians[f"{what} settings"]
            print(f"{what}: settings / signed CPU (the rate ratio a CPU-bound server would see):"
                  f" {sum(plain) / sum(signed):.3f}; signed costs"
                  f" {sum(signed) - sum(plain):+.1f} us per operation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
