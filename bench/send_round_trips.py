"""What one round trip per send would save: the API's three against one function call (same run).

The API sends a message in three round trips (db/transaction.py): the `BEGIN` batch that enters
the signed context, the send statement (chat/messages/sending.py), `COMMIT`. With asyncpg, one
round trip means one statement: here, the same send statement wrapped in a SQL function that
enters the context first (`SELECT vechat.enter($n)`, then the statement), called in autocommit.
The function is this benchmark's own (`vechat.bench_send`, made in its private cluster from the
API's statement): a measurement of the design, not the design — the API would also have to raise
inside it what it now reads from the statement's row (429, 404), so that a refused send writes
nothing.

Starts its own durable PostgreSQL 18 (SQL functions' plans are cached from 18 on), seeds it like
bench/http_api.py (10 organisations, history, ANALYZE), and sends text messages from `--tasks`
tasks over `--connections` connections (each task its own sender and conversation), both ways in
interleaved rounds. Reports sends per second, this process's CPU (the client: asyncpg and the
event loop) and PostgreSQL's CPU per send, and one / three.

    .venv/bin/python bench/send_round_trips.py [--seconds 5] [--rounds 4] [--tasks 32]
                                               [--connections 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import asyncpg
import psycopg

import http_api
from harness.cluster import app_url, migrated_database, private_cluster, server_version, workdir
from harness.meters import children, process_cpu
from harness.report import reproduce
from vechat_rls import db
from vechat_rls.chat.messages import MessageCreate, send_message
from vechat_rls.chat.messages.sending import RATE_LIMIT_ACTION, RATE_WINDOW_S, SEND_SQL
from vechat_rls.config import Settings
from vechat_rls.db import context

RATE_LIMIT = 10**9  # its statement runs, it never refuses
THREE, ONE = "three round trips (the API)", "one round trip (function)"


async def make_function(admin_url: str, url: str) -> int:
    """`vechat.bench_send(<the send statement's parameters>, token)`; → its parameter count."""
    statement = SEND_SQL[False, False]  # a text message: no attachment, no reply

    def name(t: asyncpg.types.Type) -> str:
        return t.name if t.schema == "pg_catalog" else f"{t.schema}.{t.name}"

    conn = await asyncpg.connect(url)
    try:
        prepared = await conn.prepare(statement)  # described, never run
        parameters = [name(t) for t in prepared.get_parameters()]
        columns = ", ".join(f'"{a.name}" {name(a.type)}' for a in prepared.get_attributes())
    finally:
        await conn.close()
    token = len(parameters) + 1
    ddl = (f"CREATE FUNCTION vechat.bench_send({', '.join(parameters)}, text)"
           f" RETURNS TABLE ({columns}) LANGUAGE sql AS $bench$\n"
           f"SELECT vechat.enter(${token});\n{statement}\n$bench$")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SET ROLE vechat_owner")
        admin.execute(ddl.encode())
        admin.execute("RESET ROLE")
        admin.execute(f"GRANT EXECUTE ON FUNCTION vechat.bench_send({', '.join(parameters)}, text)"
                      " TO vechat_app".encode())
    return token


async def sends(database: db.Database, mode: str, clients: list[http_api.BenchClient],
                seconds: float, tag: str, call: str) -> int:
    """Closed loop: each task sends from its client until `seconds` pass; → messages sent."""
    done = 0
    end = time.perf_counter() + seconds

    async def task(client: http_api.BenchClient) -> None:
        nonlocal done
        identity, n = client.identity, 0
        while time.perf_counter() < end:
            n += 1
            client_id, body = f"{tag}-{client.index}-{n}", f"bench message {n}"
            if mode == THREE:
                async with database.tenant(identity) as conn:
                    await send_message(conn, identity, client.conversation_id,
                                       MessageCreate(client_id=client_id, body=body),
                                       database.settings)
            else:
                async with database.pool.acquire() as conn:
                    token = await context.sign_for(conn, identity)
                    row = await conn.fetchrow(
                        call, RATE_LIMIT_ACTION, float(RATE_WINDOW_S), client.conversation_id,
                        "text", body, client_id, None, None, None, None, None, RATE_LIMIT,
                        identity.user_id, identity.user_type, token)
                    assert row is not None and row["id"] is not None, row
            done += 1

    await asyncio.gather(*(task(c) for c in clients))
    return done


async def measure(url: str, postmaster: int, call: str, args: argparse.Namespace,
                  conversations: dict[tuple[int, int, int], int]
                  ) -> dict[str, list[tuple[float, float, float]]]:
    settings = Settings(database_url=url, pool_min=args.connections, pool_max=args.connections,
                        rate_limit_per_min=RATE_LIMIT)
    clients = http_api.bench_clients(conversations)[: args.tasks]
    databases = {mode: db.Database(settings) for mode in (THREE, ONE)}
    results: dict[str, list[tuple[float, float, float]]] = {THREE: [], ONE: []}
    try:
        for database in databases.values():
            await database.open(warm_up=False)
        for n in range(args.rounds):
            for mode in (THREE, ONE) if n % 2 == 0 else (ONE, THREE):
                short = "one" if mode == ONE else "three"  # client ids differ between the modes
                await sends(databases[mode], mode, clients, 1.0, f"{short}-warm-{n}", call)
                backends = [postmaster, *children(postmaster)]
                pg, me, started = (sum(process_cpu(p) for p in backends), time.process_time(),
                                   time.perf_counter())
                count = await sends(databases[mode], mode, clients, args.seconds, f"{short}-{n}",
                                    call)
                wall = time.perf_counter() - started
                pg_us = (sum(process_cpu(p) for p in backends) - pg) / count * 1e6
                me_us = (time.process_time() - me) / count * 1e6
                results[mode].append((count / wall, me_us, pg_us))
                print(f"round {n} {mode:30}: {count / wall:6.0f} sends/s, client CPU"
                      f" {me_us:5.0f} us, PostgreSQL CPU {pg_us:5.0f} us per send", flush=True)
    finally:
        for database in databases.values():
            await database.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--tasks", type=int, default=32, help="concurrent senders (<= 32)")
    parser.add_argument("--connections", type=int, default=20, help="pool size")
    args = parser.parse_args(argv)
    if not 1 <= args.tasks <= http_api.CLIENTS:
        parser.error(f"--tasks must be 1..{http_api.CLIENTS}")
    with workdir("round-trips") as work, private_cluster(work, durable=True) as pg:
        admin_url = migrated_database(pg)
        conversations = http_api.seed(admin_url)
        url = app_url(admin_url)
        token = asyncio.run(make_function(admin_url, url))
        call = ("SELECT * FROM vechat.bench_send("
                + ", ".join(f"${n}" for n in range(1, token + 1)) + ")")
        postmaster = pg.pid()
        assert postmaster is not None
        print(f"vechat-rls send round trips: PostgreSQL {server_version(admin_url)} (durable),"
              f" {args.tasks} tasks over {args.connections} connections, {args.seconds:g} s x"
              f" {args.rounds} interleaved rounds (median), signed contexts, text messages")
        print(f"reproduce: {reproduce(__file__, argv)}\n")
        results = asyncio.run(measure(url, postmaster, call, args, conversations))
    medians = {mode: [statistics.median(r[i] for r in runs) for i in range(3)]
               for mode, runs in results.items()}
    print(f"\n{'what':32} {'sends/s':>8} {'client us':>10} {'PG us':>7}")
    for mode, (rate, me_us, pg_us) in medians.items():
        print(f"{mode:32} {rate:8.0f} {me_us:10.0f} {pg_us:7.0f}")
    (rate3, me3, pg3), (rate1, me1, pg1) = medians[THREE], medians[ONE]
    print(f"\none / three: sends/s {rate1 / rate3:.2f}; per send the client saves {me3 - me1:.0f}"
          f" us of CPU and PostgreSQL {pg3 - pg1:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
