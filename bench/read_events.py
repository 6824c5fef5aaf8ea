"""What the realtime hub's read-back costs PostgreSQL per recipient (`vechat.read_events`).

Starts its own PostgreSQL 18, migrates it and seeds one organisation with `--pairs` conversations
(personnel i, client i) of `--messages` messages each. Then runs the hub's own statement
(`realtime/events.READ_EVENTS_SQL`, through a connection set up like the pool's) over and over
for K recipients -- both participants of K conversations -- each with 1 and with 3 new events,
and prints per call: wall time, the backend's own CPU (from /proc, so it is PostgreSQL's CPU
alone, whatever else runs), that CPU per recipient, and the client's CPU (asyncpg decoding).
Once as `vechat_app` (row-level security on) and once, the baseline in the same run, as a
BYPASSRLS role with the same privileges: the difference is what the policies cost per recipient
context.

    .venv/bin/python bench/read_events.py [--pairs 200] [--messages 20] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from harness.cluster import (
    BYPASS_ROLE,
    app_url,
    bypass_url,
    migrated_database,
    private_cluster,
    workdir,
)
from harness.meters import process_cpu
from harness.report import Column, Table
from harness.seed import Seeder
from vechat_rls import db
from vechat_rls.db import context
from vechat_rls.identity import Identity
from vechat_rls.realtime.events import READ_EVENTS_SQL

ORGANISATION = 1
RECIPIENTS = (1, 7, 50)  # conversations per call (x2 participants): quiet, busy wake-up, poll
RESULTS = Table(
    Column("role", 20, left=True, gap=""), Column("recipients x new", 16),
    Column("rows", 6, "d"), Column("wall us", 9, ".0f"), Column("pg us", 9, ".0f"),
    Column("pg us/recip", 11, ".1f"), Column("client us", 9, ".0f"),
)


def seed(admin_url: str, pairs: int, messages: int) -> None:
    """Personnel and clients 1..`pairs` of one organisation, a conversation for each (personnel
    i, client i), then `messages` rounds of one message in each, a transaction per round."""
    with psycopg.connect(admin_url) as conn:
        seeder = Seeder(conn)
        conversations = seeder.organisation(ORGANISATION, pairs, pairs, lambda i: [i])
        conn.commit()
        for n in range(messages):
            for i in range(1, pairs + 1):
                seeder.act_as(ORGANISATION, i)
                seeder.messages(ORGANISATION, conversations[(i, i)], i, i,
                                [f"message {n} from personnel {i} " * 4])
            conn.commit()
        seeder.analyze()


async def measure(url: str, role: str, cursors: dict[tuple[str, int], int],
                  calls: int) -> list[str]:
    conn = await db.connect(url)
    try:
        await db.init_connection(conn)  # the pool's JSON codecs
        pid, start = await context.backend_of(conn)
        lines = []
        for conversations in RECIPIENTS:
            for behind in (1, 3):
                def recipients(conversations: int = conversations,
                               behind: int = behind) -> list[list[object]]:
                    # As the hub: each recipient with a token signed for this connection.
                    return [[ORGANISATION, kind, i, cursors[(kind, i)] - behind,
                             context.sign(Identity(organisation_id=ORGANISATION, user_id=i,
                                                   user_type=kind), pid, start)]
                            for i in range(1, conversations + 1)
                            for kind in ("client", "personnel")]

                for _ in range(20):  # plans cached, caches warm
                    rows = await conn.fetch(READ_EVENTS_SQL, recipients(), 1000)
                batches = [recipients() for _ in range(calls)]
                cpu, client, wall = process_cpu(pid), time.process_time(), time.perf_counter()
                for batch in batches:
                    rows = await conn.fetch(READ_EVENTS_SQL, batch, 1000)
                wall = (time.perf_counter() - wall) / calls
                cpu = (process_cpu(pid) - cpu) / calls
                client = (time.process_time() - client) / calls
                lines.append(RESULTS.row(
                    role, f"{len(batches[0])} x {behind}", len(rows), wall * 1e6, cpu * 1e6,
                    cpu * 1e6 / len(batches[0]), client * 1e6))
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
def seeded_server(pairs: int, messages: int) -> Iterator[str]:
    """A durable PostgreSQL 18 of its own, migrated and seeded (`seed`): its admin URL."""
    with workdir("read") as work, private_cluster(work, durable=True) as pg:
        admin_url = migrated_database(pg)
        seed(admin_url, pairs, messages)
        yield admin_url


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], argv)
    with seeded_server(args.pairs, args.messages) as admin_url:
        with psycopg.connect(admin_url) as conn:
            cursors: dict[tuple[str, int], int] = {
                (kind, user_id): last for kind, user_id, last in conn.execute(
                    "SELECT user_type, user_id, last_seq FROM public.vechat_event_cursors")}
        print(f"vechat.read_events as the hub runs it (READ_EVENTS_SQL); {args.pairs} "
              f"conversations x {args.messages} messages; {args.calls} calls per row")
        print(RESULTS.header())
        results: list[Any] = []
        for role, url in (("vechat_app", app_url(admin_url)), (BYPASS_ROLE, bypass_url(admin_url))):
            results += asyncio.run(measure(url, role, cursors, args.calls))
        print("\n".join(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
