"""PostgreSQL's CPU per message sent: the send path as it is against an earlier commit's, A/B.

Starts its own durable PostgreSQL (fsync and synchronous_commit on), migrates it to head, seeds
bench/http_api.py's 10 organisations, and sends messages with the API's own `send_message` in
`db.tenant()` (doorbell off, as the coalesced mode runs it) from 32 tasks over 16 connections,
in interleaved rounds of two variants of the database side of the send path:

* `before`: the trigger functions of `--before REV` (db/functions/12_vechat_conversations.sql and
  20_message_triggers.sql, read with `git show`) and the indexes as migration 0003 found them
  (its down migration);
* `after`: this tree's functions and migration 0003's indexes.

Everything else — tables, policies, the statement the API sends — is the same, so the ratio is
what the triggers and indexes cost. PostgreSQL's CPU is every server process's user + system
time over the round (backends, WAL writer, checkpointer), per message; the rate is printed too,
but on a shared machine CPU per message is the steadier figure.

    .venv/bin/python bench/send_path.py [--before 80541e1] [--seconds 6] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

import http_api
from harness.cluster import app_url, migrated_database, private_cluster, workdir
from harness.meters import children, closed_tasks, event_loop_runner, process_cpu
from harness.report import reproduce
from vechat_rls import db
from vechat_rls.chat.messages.sending import send_message
from vechat_rls.chat.messages.shapes import MessageCreate
from vechat_rls.config import Settings

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("db/functions/12_vechat_conversations.sql", "db/functions/20_message_triggers.sql")
MIGRATION = "db/migrations/0003_send_path_indexes"
# Every index migration 0003 touches, dropped before either variant creates its own.
RESET = """
DROP INDEX IF EXISTS public.vechat_messages_organisation_id_sender_type_sender_id_idx;
DROP INDEX IF EXISTS public.vechat_conversations_participant1_idx;
DROP INDEX IF EXISTS public.vechat_conversations_participant2_idx;
"""


def creates(path: Path) -> str:
    """The CREATE INDEX statements of a migration file."""
    return "".join(f"{s.strip()};\n" for s in path.read_text().split(";") if "CREATE INDEX" in s)


def variants(before: str) -> dict[str, str]:
    old = "".join(
        subprocess.run(["git", "show", f"{before}:{path}"], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout
        for path in FUNCTIONS
    )
    new = "".join((REPO / path).read_text() for path in FUNCTIONS)
    return {
        "before": old + RESET + creates(REPO / f"{MIGRATION}.down.sql"),
        "after": new + RESET + creates(REPO / f"{MIGRATION}.up.sql"),
    }


async def measure(args: argparse.Namespace, postmaster: int, admin_url: str,
                  conversations: dict[tuple[int, int, int], int]) -> None:
    sql = variants(args.before)
    clients = http_api.bench_clients(conversations)
    settings = Settings(database_url=app_url(admin_url), rate_limit_per_min=10**9)
    pool = await db.create_pool(app_url(admin_url), min_size=16, max_size=16)

    def pg_cpu() -> float:
        return sum(process_cpu(pid) for pid in [postmaster, *children(postmaster)])

    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    try:
        for round_no in range(args.rounds):
            order = ("before", "after") if round_no % 2 == 0 else ("after", "before")
            for variant in order:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(sql[variant].encode())
                    conn.execute("VACUUM ANALYZE public.vechat_conversations, "
                                 "public.vechat_event_cursors, public.vechat_rate_limits")
                    conn.execute("CHECKPOINT")
                sent = 0

                async def one(i: int, n: int, variant: str = variant, r: int = round_no) -> None:
                    nonlocal sent
                    c = clients[i]
                    async with db.tenant(pool, c.identity, statement_timeout_ms=5000) as conn:
                        await conn.execute("SET LOCAL vechat.doorbell = 'off'")
                        await send_message(conn, c.identity, c.conversation_id, MessageCreate(
                            body=f"bench message {n} of the send path",
                            client_id=f"{variant}-{r}-{i}-{n}"), settings)
                    sent += 1

                cpu_before = pg_cpu()
                began = time.perf_counter()
                rate = await closed_tasks(one, len(clients), args.seconds)
                us = (pg_cpu() - cpu_before) / sent * 1e6
                results[variant].append((rate, us))
                print(f"round {round_no + 1} {variant:6s}: {rate:5.0f} messages/s, PostgreSQL"
                      f" CPU {us:5.0f} us per message ({time.perf_counter() - began:.1f} s)",
                      flush=True)
    finally:
        await pool.close()
    ratios = [a[1] / b[1] for a, b in zip(results["after"], results["before"], strict=True)]
    print()
    for variant, runs in results.items():
        print(f"{variant:6s}: median {statistics.median(u for _, u in runs):.0f} us of"
              f" PostgreSQL CPU per message, {statistics.median(r for r, _ in runs):.0f}"
              " messages/s")
    print("after / before, PostgreSQL CPU per message, round by round: "
          + ", ".join(f"{r:.2f}" for r in ratios)
          + f"; median {statistics.median(ratios):.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="80541e1", help="the commit to compare with")
    parser.add_argument("--seconds", type=float, default=6.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    args = parser.parse_args(argv)
    print(f"reproduce: {reproduce(__file__, argv)}")
    with workdir("send-path") as work, private_cluster(work, durable=True) as pg:
        admin_url = migrated_database(pg)
        conversations = http_api.seed(admin_url)
        postmaster = pg.pid()
        assert postmaster is not None
        event_loop_runner()(measure(args, postmaster, admin_url, conversations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
