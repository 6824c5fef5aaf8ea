"""What one read of the realtime hub costs the API process, per call and per recipient.

`bench/read_events.py` measures PostgreSQL's side of `vechat.read_events`; this measures the
server's: the hub's own `_read` (realtime/hub.py) -- the pool, the statement through asyncpg, the
rows decoded, mapped with the HTTP API's mapping and encoded as frames (realtime/events.py), and
queued on each socket's outbox. Sending the frames is not included (`bench/ws_send.py`).

Starts its own PostgreSQL 18, migrates it and seeds one organisation with `--pairs` conversations
(personnel i, client i) of `--messages` messages each, opens a hub with one outbox per user (no
sockets), then reads K conversations' both participants again and again, each time from one
event before their last (`x 1`) or with nothing new (`x 0`: every recipient skipped by its
cursor: the baseline in the same run, the cost of a call that finds nothing to send). Prints
per call: wall time, this process's CPU (the hub's Python, asyncpg), and PostgreSQL's (the
backends' own, from /proc), each also per recipient.

    .venv/bin/python bench/hub_read.py [--pairs 200] [--messages 20] [--calls 300]
"""

from __future__ import annotations

import asyncio
import sys
import time

import psycopg

from harness.cluster import app_url
from harness.meters import process_cpu
from harness.report import Column, Table
from read_events import ORGANISATION, RECIPIENTS, arguments, seeded_server
from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.identity import USER_TYPES, Identity, User
from vechat_rls.realtime.hub import Hub
from vechat_rls.realtime.outbox import Outbox

BACKENDS_SQL = "SELECT pid FROM pg_stat_activity WHERE application_name = 'vechat-rls'"
RESULTS = Table(
    Column("recipients x new", 16, gap=""), Column("frames", 6, "d"),
    Column("wall us", 8, ".0f"), Column("api us", 8, ".0f"), Column("api us/rcp", 10, ".1f"),
    Column("pg us", 8, ".0f"), Column("pg us/rcp", 10, ".1f"),
)


async def measure(url: str, admin_url: str, pairs: int, calls: int) -> list[str]:
    settings = Settings(database_url=url, ws_queue_limit=100_000, pool_min=1, pool_max=2)
    database = db.Database(settings)
    await database.open()
    hub = Hub(database, settings)  # not started: only its reads run, one at a time
    outboxes: dict[User, Outbox] = {}
    for i in range(1, pairs + 1):
        for kind in USER_TYPES:
            identity = Identity(organisation_id=ORGANISATION, user_type=kind, user_id=i)
            outbox = await hub.open(identity, None)
            outboxes[outbox.key] = outbox
    last = {key: outbox.delivered for key, outbox in outboxes.items()}
    lines = []
    try:
        for conversations in RECIPIENTS:
            for behind in (1, 0):
                wanted = [((ORGANISATION, kind, i), last[(ORGANISATION, kind, i)] - behind)
                          for i in range(1, conversations + 1) for kind in USER_TYPES]

                async def read_once(wanted: list[tuple[User, int]] = wanted) -> None:
                    for key, since in wanted:
                        outbox = outboxes[key]  # as if it had sent up to `since` and no further
                        outbox.delivered = since
                        while not outbox.queue.empty():
                            outbox.queue.get_nowait()
                    await hub._read(wanted)

                for _ in range(20):  # plans cached, caches warm
                    await read_once()
                frames = sum(outboxes[key].queue.qsize() for key, _since in wanted)
                with psycopg.connect(admin_url, autocommit=True) as admin:
                    pids = [row[0] for row in admin.execute(BACKENDS_SQL)]
                pg = sum(process_cpu(pid) for pid in pids)
                client, wall = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    await read_once()
                wall = (time.perf_counter() - wall) / calls
                client = (time.process_time() - client) / calls
                pg = (sum(process_cpu(pid) for pid in pids) - pg) / calls
                n = len(wanted)
                lines.append(RESULTS.row(f"{n} x {behind}", frames, wall * 1e6, client * 1e6,
                                         client * 1e6 / n, pg * 1e6, pg * 1e6 / n))
    finally:
        for outbox in outboxes.values():
            hub.close(outbox)
        await database.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], argv)
    with seeded_server(args.pairs, args.messages) as admin_url:
        print(f"the hub's read (Hub._read: statement, rows, mapping, frames queued); "
              f"{args.pairs} conversations x {args.messages} messages; {args.calls} calls per row")
        print(RESULTS.header())
        lines = asyncio.run(measure(app_url(admin_url), admin_url, args.pairs, args.calls))
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
