"""What the realtime hub's read-back costs PostgreSQL per recipient (`vechat.read_events`).

Starts its own PostgreSQL 18, migrates it and seeds one organisation with `--pairs` conversations
(personnel i, client i) of `--messages` messages each. Then runs the hub's own statement
(`realtime/events.READ_EVENTS_SQL`, through a connection set up like the pool's) over and over
for K recipients -- both participants of K conversations -- each with 1 and with 3 new events,
and prints per call: wall time, the backend's own CPU (from /proc, so it is PostgreSQL's CPU
alone, whatever else runs), that CPU per recipient, and the client's CPU (asyncpg decoding).
Once as `vechat_app` (row-level security on) and once as a BYPASSRLS role with the same
privileges: the difference is what the policies cost per recipient context.

    .venv/bin/python bench/read_events.py [--pairs 200] [--messages 20] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from http_api import (
    APP_PASSWORD,
    BYPASS_PASSWORD,
    BYPASS_ROLE,
    CREATE_CONVERSATION,
    INSERT_CONTACT,
    SEED_MESSAGE,
    SET_CONTEXT,
    bench_database,
    url_for,
)
from vechat_rls import db
from vechat_rls.pgserver import PgServer, embedded_bindir
from vechat_rls.realtime.events import READ_EVENTS_SQL

ORGANISATION = 1
RECIPIENTS = (1, 7, 50)  # conversations per call (x2 participants): quiet, busy wake-up, poll


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(admin_url: str, pairs: int, messages: int) -> None:
    with psycopg.connect(admin_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(INSERT_CONTACT, [
                (ORGANISATION, i, kind, f"{kind} {i}", f"{kind}{i}@org.example",
                 "commercial" if kind == "personnel" else None, [])
                for i in range(1, pairs + 1) for kind in ("personnel", "client")])
        conversations = {}
        for i in range(1, pairs + 1):
            conn.execute(SET_CONTEXT, (str(ORGANISATION), str(i), "personnel"))
            row = conn.execute(CREATE_CONVERSATION,
                               (ORGANISATION, i, "client", i, "personnel")).fetchone()
            assert row is not None
            conversations[i] = row[0]
        conn.commit()
        for n in range(messages):
            for i in range(1, pairs + 1):
                conn.execute(SET_CONTEXT, (str(ORGANISATION), str(i), "personnel"))
                conn.execute(SEED_MESSAGE, (ORGANISATION, conversations[i], i, "personnel", i,
                                            "client", f"message {n} from personnel {i} " * 4))
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()


async def measure(url: str, role: str, cursors: dict[tuple[str, int], int],
                  calls: int) -> list[str]:
    conn = await db.connect(url)
    try:
        await db._init_connection(conn)  # the pool's JSON codecs
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        lines = []
        for conversations in RECIPIENTS:
            for behind in (1, 3):
                recipients = [[ORGANISATION, kind, i, cursors[(kind, i)] - behind]
                              for i in range(1, conversations + 1)
                              for kind in ("client", "personnel")]
                for _ in range(20):  # plans cached, caches warm
                    rows = await conn.fetch(READ_EVENTS_SQL, recipients, 1000)
                cpu, client, wall = backend_cpu_s(pid), time.process_time(), time.perf_counter()
                for _ in range(calls):
                    rows = await conn.fetch(READ_EVENTS_SQL, recipients, 1000)
                wall = (time.perf_counter() - wall) / calls
                cpu = (backend_cpu_s(pid) - cpu) / calls
                client = (time.process_time() - client) / calls
                lines.append(
                    f"{role:20s} {len(recipients):9d} x {behind} {len(rows):6d} "
                    f"{wall * 1e6:9.0f} {cpu * 1e6:9.0f} {cpu * 1e6 / len(recipients):11.1f} "
                    f"{client * 1e6:9.0f}")
        return lines
    finally:
        await conn.close()


def arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    """--pairs, --messages, --calls: what this benchmark and bench/hub_read.py take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pairs", type=int, default=200, help="conversations seeded")
    parser.add_argument("--messages", type=int, default=20, help="messages per conversation")
    parser.add_argument("--calls", type=int, default=300, help="calls per measurement")
    args = parser.parse_args(argv)
    if args.pairs < max(RECIPIENTS) or args.messages < 3:
        parser.error(f"--pairs must be at least {max(RECIPIENTS)} and --messages at least 3")
    return args


@contextlib.contextmanager
def seeded_server(pairs: int, messages: int) -> Iterator[tuple[PgServer, str]]:
    """A PostgreSQL 18 of its own, migrated and seeded (`seed`): (server, admin URL)."""
    workdir = Path(tempfile.mkdtemp(prefix="vechat-bench-read-"))
    pg = PgServer(datadir=workdir / "postgres", bindir=embedded_bindir(), fast=False)
    try:
        pg.start()
        admin_url = bench_database(pg)
        seed(admin_url, pairs, messages)
        yield pg, admin_url
    finally:
        pg.stop("fast")
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], argv)
    with seeded_server(args.pairs, args.messages) as (pg, admin_url):
        with psycopg.connect(admin_url) as conn:
            cursors: dict[tuple[str, int], int] = {
                (kind, user_id): last for kind, user_id, last in conn.execute(
                    "SELECT user_type, user_id, last_seq FROM public.vechat_event_cursors")}
        print(f"vechat.read_events as the hub runs it (READ_EVENTS_SQL); {args.pairs} "
              f"conversations x {args.messages} messages; {args.calls} calls per row")
        print(f"{'role':20s} {'recipients x new':>13s} {'rows':>6s} {'wall us':>9s} "
              f"{'pg us':>9s} {'pg us/recip':>11s} {'client us':>9s}")
        results: list[Any] = []
        for role, url in (("vechat_app", url_for(pg, "vechat_app", APP_PASSWORD)),
                          (BYPASS_ROLE, url_for(pg, BYPASS_ROLE, BYPASS_PASSWORD))):
            results += asyncio.run(measure(url, role, cursors, args.calls))
        print("\n".join(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
