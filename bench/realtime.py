"""Realtime delivery over WebSocket: end-to-end latency, sustained delivered messages/s, memory.

Starts its own durable PostgreSQL (fsync and synchronous_commit on), migrates it and seeds 10
organisations, each with 50 personnel and 50 clients and one conversation per (personnel i,
client i) pair with 20 messages in it (statistics of an empty table would mislead the first plans
made). Then, for each doorbell mode, it starts two `vechat-rls serve` processes (one
uvicorn worker each) and connects 1,000 WebSockets: the personnel (senders) of odd organisations
on process A and of even ones on process B, every client (receiver) on the *other* process than
its sender. Senders send with the socket's `send` frame (the API's own `send_message`); the body
carries the scheduled send time (CLOCK_MONOTONIC, the same clock in every process), so the
receiving process computes end to end latency = recipient frame read - scheduled send start.

The load generator is two processes this script starts, `bench/realtime_worker.py senders` and
`bench/realtime_worker.py receivers` (uvloop + bench/wsclient.py, a lean client that reads each
frame in the event loop's own step: `websockets`' client spent ~50 us of the shared cores per
frame), driven over their stdin/stdout: one holds the 500 sender sockets, one the 500 receiver
sockets. Its ceiling is measured first against a trivial relay, `bench/realtime_relay.py PORT`
(another process that acks each `send` and forwards one frame to the receiver and one to the
sender, like the server). All of it -- PostgreSQL, both servers, the generator, the relay --
shares this machine's cores; the `cores` columns say who used what, and `other` is everything
else running on the machine meanwhile (other people's work: noise).

Reported, per doorbell mode (`VECHAT_DOORBELL`): `coalesced` (the default: one NOTIFY commit per
process and batch, realtime/ringer.py), `transaction` (the trigger's NOTIFY in every writing
commit), `off` (the trigger silenced through the connection's `vechat.doorbell = off`, no
ringer, poll once an hour: the event log is still written, nothing is delivered -- the send rate
without any doorbell) and `poll` (the same, but delivered by the hub's safety-net poll every
second: the delivery work without a doorbell):

* latency p50/p99 at `--rate` messages/s (200), open loop: sends leave on a fixed schedule
  whatever the servers do, round robin over the 500 senders, and latency counts from the
  scheduled time (no coordinated omission);
* the maximum sustained rate: `--concurrency` senders (32) in closed loop (next send when the
  ack is back); delivered = recipient frames read per second in the measured window. Every
  message is checked once and in order: duplicates, gaps in a socket's seq and messages acked but
  never delivered are counted;
* in the same run, the database's own ceilings (asyncpg, same server, 32 tasks, 20 connections):
  single-row plain inserts, single-row insert + pg_notify commits, and message inserts in
  `db.tenant()` with the trigger doorbell, with no doorbell and with the coalesced ringer;
* CPU per message at a fixed rate below saturation (`--cost-rate`, 700/s), in every mode: what
  the servers, PostgreSQL and the generator spend per message sent, steadier than rates at
  saturation (there every part competes for the same cores, and a run's rate moves by +-10 %).
  `off / coalesced` is the delivered ratio a machine bound by CPU would show at that rate (at
  saturation, larger batches make delivery cheaper per message); `off / poll` is the same for the
  cheapest delivery this design has (no doorbell, every user read once a second);
* RSS of each server process with its 500 sockets, and of one process holding all 1,000.

Modes run in rotating order over `--rounds`; rates are medians. Every measurement starts from
the same database state (VACUUM of the hot tables, CHECKPOINT): the rows every message updates
(conversation, cursors, rate-limit counter) otherwise carry the dead versions of the run before
into the next one, which then runs up to 2x slower whatever its mode.

A/B of server settings: `--ab VECHAT_X=V[,...]` adds a mode `ab`, the coalesced doorbell with
those settings, to the same rounds, and prints its ratios to `off` and to `coalesced` round by
round. Runs of the same code differ by more (delivered/off 0.74 and 0.80 in two 3-round runs an
hour apart) than most changes do; pairs within one run differ much less.

Diagnostics: `--profile DIR` samples both servers with py-spy (`--native`: with C frames) during
each maximum-rate run of the last round; `--statements` loads pg_stat_statements and prints, per
maximum-rate and fixed-rate run, PostgreSQL's top statements per message, its CPU by process kind
and what the API's connections were doing (sampled from pg_stat_activity: waiting on the NOTIFY
lock, on WAL, or on the API). `--perf DIR` records the whole machine with `perf record -a -g` during
each maximum-rate run (DIR/perf-MODE.data) and fixed-rate run (DIR/perf-MODE-RATE.data) of the last
round (`perf report -i DIR/perf-MODE.data --sort comm,dso`).

    .venv/bin/python bench/realtime.py [--duration 10] [--rounds 2] [--rate 200]
                                       [--cost-rate 700] [--concurrency 32] [--sockets 1000]
                                       [--quick]
                                       [--modes coalesced,transaction,off,poll]
                                       [--phases ceiling,db,latency,cost,max,memory]
                                       [--profile DIR [--native]] [--perf DIR]
                                       [--statements] [--ab VECHAT_X=V[,VECHAT_Y=W]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from harness.cluster import (
    app_url,
    migrated_database,
    private_cluster,
    server_version,
    workdir,
)
from harness.meters import (
    CpuMeter,
    children,
    closed_tasks,
    event_loop_runner,
    percentiles,
    process_cpu,
    rss_mib,
)
from harness.profiling import NOT_FOUND, start_py_spy, summarise_profile
from harness.report import Column, Ratios, Table, cores, cpu_per_op, middle, ms, reproduce
from harness.seed import seed_organisations
from harness.servers import JWT_SECRET, ApiServer, start_all, token, wait_for_port
from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.identity import Identity
from vechat_rls.pgserver import PgServer, free_port
from vechat_rls.realtime.pace import AT_ONCE, BATCHING
from vechat_rls.realtime.ringer import Ringer

BENCH = Path(__file__).resolve().parent
ORGANISATIONS = 10
MODES = ("coalesced", "transaction", "off", "poll")
AB = "ab"  # --ab: the coalesced doorbell once more, with other server settings, in the same rounds
ALL_MODES = (*MODES, AB)
DB_TASKS = 32
DB_CONNECTIONS = 20
HOT_TABLES = ("public.vechat_conversations", "public.vechat_event_cursors",
              "public.vechat_rate_limits", "public.vechat_messages", "public.vechat_events",
              "public.vechat_presence", "public.vechat_presence_connections")
PHASES = ("ceiling", "db", "latency", "cost", "max", "memory")  # --phases: all by default
DRAIN_S = 3.0  # after a run, how long deliveries may still arrive before they are counted
QUICK_DRAIN_S = 1.0  # the same with --quick; either is at least the servers' pace + 1 s
# The time of a line in the servers' logs (Litestar's format: "LEVEL - 2026-11-27 10:06:02,823 - ").
LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3})")

# --statements: what the API's connections do, sampled (active ones, and what they wait for).
WAITS_SQL = """
SELECT state || coalesce(': ' || wait_event_type || '/' || wait_event, '')
       || CASE WHEN state = 'active' THEN ' ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 40)
               ELSE '' END
FROM pg_stat_activity
WHERE application_name = 'vechat-rls' AND state <> 'idle'
"""

# --statements: PostgreSQL's processes, to split its CPU by what they serve.
BACKENDS_SQL = """
SELECT pid, CASE WHEN backend_type = 'client backend'
                 THEN coalesce(nullif(application_name, ''), 'client') ELSE backend_type END
FROM pg_stat_activity
"""

# --statements: how each table was read (a sequential scan in the hot path shows here).
TABLE_READS_SQL = """
SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0),
       n_tup_ins + n_tup_upd + n_tup_del, n_dead_tup
FROM pg_stat_user_tables
"""

# --statements: where PostgreSQL's time went in a measured run, per message sent.
STATEMENTS_SQL = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 100), calls, plans,
       total_exec_time, total_plan_time, toplevel
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time + total_plan_time DESC
LIMIT 16
"""


def server_env(text: str) -> dict[str, str]:
    """--ab: "VECHAT_X=V,VECHAT_Y=W" -> the servers' environment additions."""
    env = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("VECHAT_"):
            raise argparse.ArgumentTypeError(f"{item!r}: expected VECHAT_NAME=VALUE")
        env[name] = value
    return env




@dataclass
class Diagnosis:
    """--statements: what was true when a measured run started."""

    backends: list[tuple[int, str]]  # PostgreSQL's processes: (pid, what they serve)
    cpu_before: dict[int, float]
    started: float
    notifies: int
    sampler: asyncio.Task[dict[str, int]]
    tables: dict[str, tuple[int, ...]]  # TABLE_READS_SQL's counters when the run started


class WorkerProcess:
    """A load generator process (bench/realtime_worker.py), driven by JSON lines."""

    def __init__(self, role: str, log: Path) -> None:
        self.role = role  # senders | receivers
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(BENCH / "realtime_worker.py"), self.role,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=1 << 26,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def call(self, cmd: str, **args: Any) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.role} worker exited; see {self.log}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.role} worker: {reply['error']}")
        return reply["ok"]

    async def stop(self) -> None:
        """Closing its stdin ends it; one that does not end within 10 s is killed."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()  # our own child, by its handle
            await self.proc.wait()


@dataclass(frozen=True)
class PairUsers:
    organisation_id: int
    user_id: int  # personnel i and client i share the number
    conversation_id: int


SEED_HISTORY = 20  # messages per conversation before anything is measured


def seed(admin_url: str, pairs_per_org: int) -> list[PairUsers]:
    """Per organisation, personnel and clients 1..`pairs_per_org`, a conversation for each
    (personnel i, client i) and its first `SEED_HISTORY` messages."""
    conversations = seed_organisations(
        admin_url, ORGANISATIONS, pairs_per_org, pairs_per_org, lambda i: [i],
        lambda seeder, *conversation: seeder.history(*conversation, SEED_HISTORY))
    return [PairUsers(org, i, conversation_id)
            for (org, i, _i), conversation_id in conversations.items()]


UrlOf = Callable[[PairUsers, bool], str]
"""(pair, receiving) -> the WebSocket URL its personnel (False) or client (True) connects to."""


def from_ns(ns: float | None) -> float | None:
    """A time the workers measured in ns."""
    return None if ns is None else ns / 1e9


def latency(ns: list[int]) -> tuple[float | None, float | None]:
    """(p50, p99) of latencies the workers measured in ns, in seconds."""
    p50, p99 = percentiles(ns)
    return from_ns(p50), from_ns(p99)


@dataclass
class Row:
    label: str
    rate: float | None
    p50: float | None = None  # seconds
    p99: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    note: str = ""
    errors: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    pg: PgServer
    admin_url: str  # the benchmark database's, as the superuser
    pairs: list[PairUsers]
    senders: WorkerProcess
    receivers: WorkerProcess
    servers: list[ApiServer] = field(default_factory=list)
    extra_gen: list[int] = field(default_factory=list)  # the relay while it runs
    results: dict[str, list[Row]] = field(default_factory=dict)
    notifies: int = 0  # vechat_events notifications heard by this process
    memory: dict[str, Any] = field(default_factory=dict)
    statements: dict[str, list[str]] = field(default_factory=dict)
    waits: dict[str, list[str]] = field(default_factory=dict)
    pg_cpu: dict[str, list[str]] = field(default_factory=dict)
    table_reads: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, row: Row) -> None:
        self.results.setdefault(key, []).append(row)

    @property
    def cpu(self) -> CpuMeter:
        postmaster = self.pg.pid()
        assert postmaster is not None
        return CpuMeter({
            "api": lambda: [p for s in self.servers for p in s.pids()],
            "pg": lambda: [postmaster, *children(postmaster)],
            "gen": lambda: [self.senders.pid, self.receivers.pid, os.getpid(), *self.extra_gen],
        })

    # ---- placement

    def targets(self, url_of: UrlOf) -> tuple[list[Any], list[Any]]:
        """(sender targets, receiver targets): [url, conversation_id] each."""
        senders, receivers = [], []
        for p in self.pairs:
            senders.append([url_of(p, False), p.conversation_id])
            receivers.append([url_of(p, True), p.conversation_id])
        return senders, receivers

    def api_url(self, pair: PairUsers, receiving: bool, server: ApiServer | None = None) -> str:
        """The socket URL of the pair's client (receiving) or personnel, with its token."""
        if server is None:
            # Odd organisations send through A and receive on B; even ones the other way round.
            a, b = self.servers
            sending_on_a = pair.organisation_id % 2 == 1
            server = (b if sending_on_a else a) if receiving else (a if sending_on_a else b)
        access = token(pair.organisation_id, pair.user_id,
                       "client" if receiving else "personnel")
        return f"ws://127.0.0.1:{server.port}/api/v1/ws?access_token={access}"

    async def connect_all(self, url_of: UrlOf) -> float:
        sender_targets, receiver_targets = self.targets(url_of)
        started = time.perf_counter()
        await asyncio.gather(self.receivers.call("connect", targets=receiver_targets),
                             self.senders.call("connect", targets=sender_targets))
        return time.perf_counter() - started

    async def close_all(self) -> None:
        await asyncio.gather(self.receivers.call("close"), self.senders.call("close"))

    # ---- servers

    def start_servers(self, mode: str) -> None:
        quiet = mode in ("off", "poll")
        poll = {"off": "3600", "poll": "1"}.get(mode, "5")
        env = {"VECHAT_DOORBELL": "transaction" if quiet else mode,
               "VECHAT_REALTIME_POLL_S": poll}
        if mode == AB:
            env = {"VECHAT_DOORBELL": "coalesced", "VECHAT_REALTIME_POLL_S": poll,
                   **self.args.ab}
        settings = {"vechat.doorbell": "off"} if quiet else {}
        url = app_url(self.admin_url, **settings)
        self.servers = [
            ApiServer(f"{mode}-{name}", url, 1, self.workdir / f"serve-{mode}-{name}.log", env=env)
            for name in ("A", "B")
        ]
        start_all(self.servers)

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def drain_s(self) -> float:
        """How long deliveries may still arrive after a run: a paced server (realtime/pace.py)
        may hold them for its pace."""
        pace_s = Settings.from_env(self.servers[0].env).delivery_pace_ms / 1000
        return max(QUICK_DRAIN_S if self.args.quick else DRAIN_S, pace_s + 1.0)

    def paced(self, began: float, ended: float) -> str:
        """The share of [began, ended] (wall clock) during which each server's pacer
        (realtime/pace.py) batched deliveries, from the switches its log records with their time:
        0 % means at once throughout."""
        shares = []
        for server in self.servers:
            on, on_since = 0.0, None
            for line in server.log_path.read_text(errors="replace").splitlines():
                stamp = LOG_TIME.search(line)
                if stamp is None or not (BATCHING in line or AT_ONCE in line):
                    continue
                at = time.mktime(time.strptime(stamp[1], "%Y-%m-%d %H:%M:%S")) + int(stamp[2]) / 1e3
                if BATCHING in line and on_since is None:
                    on_since = at
                elif AT_ONCE in line and on_since is not None:
                    on += max(0.0, min(at, ended) - max(on_since, began))
                    on_since = None
            if on_since is not None:
                on += max(0.0, ended - max(on_since, began))
            shares.append(f"{on / (ended - began):.0%}")
        return "paced " + " / ".join(shares)

    # ---- measurements

    async def run_mode(self, mode: str, round_no: int, last_round: bool) -> None:
        args = self.args
        await asyncio.to_thread(self.start_servers, mode)
        try:
            connect_s = await self.connect_all(self.api_url)
            await asyncio.sleep(1.0)  # leases written, queues idle
            if mode in ("coalesced", "transaction", AB) and "latency" in args.phases:
                await self.latency_run(mode, round_no, connect_s)
            if args.cost_rate and "cost" in args.phases:
                await self.cost_run(mode, round_no, last_round)
            if "max" not in args.phases:
                await self.close_all()
                return
            spies = []
            if args.profile and last_round:
                spies = self.start_profile(args.duration + args.warmup)
            if args.perf and last_round:
                spies += self.start_perf(mode, args.duration + args.warmup)
            await self.max_run(mode, round_no)
            for spy in spies:
                await asyncio.to_thread(spy.wait)
            rss = [rss_mib(s.pids()[0]) for s in self.servers]
            self.add(f"rss-{mode}", Row("rss", None, note=" / ".join(f"{r:.0f}" for r in rss)))
            await self.close_all()
        finally:
            await asyncio.to_thread(self.stop_servers)

    async def settle(self) -> None:
        """Every measurement starts from the same state: no dead row versions left by the one
        before (hot rows -- conversations, cursors, rate-limit counters -- are updated by every
        message), and a fresh checkpoint (full-page writes hit each run alike)."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute("VACUUM (ANALYZE) " + ", ".join(HOT_TABLES))
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    async def open_loop_run(self, phase: str, rate: float, drain_s: float,
                            run: str | None = None,
                            perf: str | None = None) -> tuple[dict[str, Any], dict[str, float],
                                                              dict[str, Any]]:
        """From a settled database, send at `rate` on a fixed schedule (CPU metered meanwhile),
        let deliveries arrive for `drain_s`, and collect them: (sent, cores, received). With
        --statements and a `run` name, PostgreSQL is watched meanwhile (`diagnose`); with --perf
        and a `perf` name, the machine is recorded (`start_perf`)."""
        args = self.args
        await self.settle()
        diagnosis = await self.diagnose() if run is not None else None
        spies = self.start_perf(perf, args.duration + args.warmup) if args.perf and perf else []
        began = time.time() + args.warmup
        sent, cpu = await self.cpu.metered(self.senders.call(
            "open_loop", phase=phase, rate=rate, duration=args.duration, warmup=args.warmup))
        sent["paced"] = self.paced(began, time.time())
        for spy in spies:
            await asyncio.to_thread(spy.wait)
        if run is not None:
            await self.diagnosed(diagnosis, run)  # CPU over the metered run, as in max_run
        await asyncio.sleep(drain_s)
        if run is not None:
            await self.statements_of(diagnosis, run, sent["sent"])
        got = await self.receivers.call("collect", phase=phase, measure_from=sent["measure_from"],
                                        end=sent["end"])
        return sent, cpu, got

    async def latency_run(self, mode: str, round_no: int, connect_s: float) -> None:
        args = self.args
        sent, cpu, got = await self.open_loop_run(f"lat{mode[0]}{round_no}", args.rate,
                                                  self.drain_s())
        latencies = got["latencies"]
        lost = sent["sent"] - sent["failed"] - got["delivered"]
        self.add(f"lat-{mode}", Row(
            f"latency at {args.rate:g}/s, {mode}", got["in_window"] / args.duration,
            *latency(latencies), cpu,
            note=(f"ack p50 {ms(from_ns(sent['ack_p50']))} p99 {ms(from_ns(sent['ack_p99']))}"
                  f" ms; generator at most {ms(from_ns(sent['behind']))} ms behind schedule;"
                  f" {len(self.pairs) * 2} sockets up in {connect_s:.1f} s; {sent['paced']}"),
            errors=problems(sent, got, lost)))

    async def cost_run(self, mode: str, round_no: int, last_round: bool) -> None:
        """CPU per message at a fixed rate below saturation: what each part costs per message,
        steadier than rates measured at saturation (where everything competes for the cores)."""
        args = self.args
        # The phase is in the client_ids: one phase's must not repeat another's (an idempotent
        # resend inserts nothing).
        sent, cpu, got = await self.open_loop_run(f"cost{mode[0]}{round_no}", args.cost_rate,
                                                  self.drain_s() + (1 if mode == "poll" else 0),
                                                  run=f"{mode} at {args.cost_rate:g}/s",
                                                  perf=f"{mode}-{args.cost_rate:g}" if last_round
                                                  else None)
        lost = sent["sent"] - sent["failed"] - got["delivered"] if mode != "off" else 0
        total = sum(cpu.get(g, 0.0) for g in ("api", "pg", "gen")) / args.cost_rate * 1e6
        self.add(f"cost-{mode}", Row(
            f"CPU at {args.cost_rate:g}/s sent, {mode}", args.cost_rate, cpu=cpu,
            note=f"api+pg+gen {total:.0f} us/msg", errors=problems(sent, got, lost)))

    async def max_run(self, mode: str, round_no: int) -> None:
        args = self.args
        phase = f"max{mode[0]}{round_no}"
        await self.settle()
        diagnosis = await self.diagnose()
        began = time.time() + args.warmup
        sent, cpu = await self.cpu.metered(self.senders.call(
            "closed_loop", phase=phase, concurrency=args.concurrency, duration=args.duration,
            warmup=args.warmup))
        paced = self.paced(began, time.time())
        run = f"{mode} maximum-rate run"
        notifies = await self.diagnosed(diagnosis, run)
        if mode != "off":
            await asyncio.sleep(self.drain_s() + (1 if mode == "poll" else 0))
        await self.statements_of(diagnosis, run, sent["sent"])
        got = await self.receivers.call("collect", phase=phase, measure_from=sent["measure_from"],
                                        end=sent["end"])
        acked = sent["sent"] - sent["failed"]
        lost = acked - got["delivered"] if mode != "off" else 0
        if mode == "off":
            row = Row("max sustained, doorbell off: SENT/s (nothing delivered)", sent["rate"],
                      cpu=cpu, note="event log written, no NOTIFY, no delivery")
        elif mode == "poll":
            row = Row("max sustained, no doorbell, 1 s poll: DELIVERED/s",
                      got["in_window"] / args.duration, *latency(got["latencies"]), cpu=cpu,
                      note=f"sent {sent['rate']:.0f}/s; delivered only by the safety-net poll")
        else:
            per_message = notifies / max(1, sent["sent"])
            heard = f"; NOTIFYs heard per message {per_message:.2f}" if args.statements else ""
            row = Row(f"max sustained, {mode}: DELIVERED/s", got["in_window"] / args.duration,
                      *latency(got["latencies"]), cpu=cpu,
                      note=f"sent {sent['rate']:.0f}/s{heard}; {paced}")
        row.errors = problems(sent, got, lost)
        self.add(f"max-{mode}", row)

    async def diagnose(self) -> Diagnosis | None:
        """With --statements, start watching PostgreSQL (statements, CPU by process, waits)."""
        if not self.args.statements:
            return None
        await self.admin_sql("SELECT pg_stat_statements_reset()")
        backends = await self.admin_sql(BACKENDS_SQL)
        await self.admin_sql("SELECT pg_stat_force_next_flush()")
        tables = {row[0]: tuple(row[1:]) for row in await self.admin_sql(TABLE_READS_SQL)}
        return Diagnosis(
            backends=[(row[0], row[1]) for row in backends],
            cpu_before={row[0]: process_cpu(row[0]) for row in backends},
            started=time.perf_counter(), notifies=self.notifies,
            sampler=asyncio.create_task(self.sample_waits()), tables=tables)

    async def diagnosed(self, diagnosis: Diagnosis | None, run: str) -> int:
        """Stop watching; keep what PostgreSQL did during `run` per message sent. Returns the
        vechat_events notifications heard meanwhile (0 without --statements)."""
        if diagnosis is None:
            return 0
        seconds = time.perf_counter() - diagnosis.started
        by_kind: dict[str, float] = defaultdict(float)
        for pid, kind in diagnosis.backends:
            by_kind[kind] += process_cpu(pid) - diagnosis.cpu_before[pid]
        # Connected during the run (the ringer's connection opens at the first ring): all of
        # their CPU was used in it.
        for pid, kind in await self.admin_sql(BACKENDS_SQL):
            if pid not in diagnosis.cpu_before:
                by_kind[kind] += process_cpu(pid)
        self.pg_cpu[run] = [f"  {used / seconds:5.2f} cores  {kind}" for kind, used in
                            sorted(by_kind.items(), key=lambda kv: -kv[1])[:8]]
        diagnosis.sampler.cancel()
        waits = await diagnosis.sampler
        samples = waits.pop("", 1)
        self.waits[run] = [f"  {n / samples:5.1f}  {what}" for what, n in
                           sorted(waits.items(), key=lambda kv: -kv[1])[:8]]
        return self.notifies - diagnosis.notifies

    async def statements_of(self, diagnosis: Diagnosis | None, run: str, sent: int) -> None:
        """With --statements, PostgreSQL's top statements and table reads since `diagnose()` per
        message sent (called once deliveries have drained, so their statements count; a backend
        reports its table counters within a second of a transaction's end)."""
        if diagnosis is None:
            return
        rows = await self.admin_sql(STATEMENTS_SQL)
        count = max(1, sent)
        self.statements[run] = [
            f"  {r[1] / count:6.2f} calls {r[2] / count:6.2f} plans {r[3] * 1000 / count:6.0f}"
            f" us exec {r[4] * 1000 / count:5.0f} us plan {'' if r[5] else '(nested) '}{r[0]}"
            for r in rows]
        reads = []
        for row in await self.admin_sql(TABLE_READS_SQL):
            before = diagnosis.tables.get(row[0], (0,) * 6)
            change = [(now - then) / count for now, then in zip(row[1:6], before, strict=False)]
            if any(change):
                reads.append((row[0], change, row[6]))
        self.table_reads[run] = [
            f"  {c[0]:6.2f} seq scans {c[1]:8.1f} rows {c[2]:6.2f} index scans {c[3]:6.2f} rows"
            f" {c[4]:5.2f} writes  {name} ({dead} dead rows)"
            for name, c, dead in sorted(reads, key=lambda r: -(r[1][1] + r[1][3]))[:8]]

    async def sample_waits(self) -> dict[str, int]:
        """What the API's backends are doing, every 20 ms: {state/wait: samples}, "" = count."""
        counts: dict[str, int] = {"": 0}
        conn = await asyncpg.connect(self.admin_url)
        try:
            while True:
                rows = await conn.fetch(WAITS_SQL)
                counts[""] += 1
                for row in rows:
                    counts[row[0]] = counts.get(row[0], 0) + 1
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            return counts
        finally:
            await conn.close()

    async def admin_sql(self, sql: str) -> list[Any]:
        conn = await asyncpg.connect(self.admin_url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    def start_perf(self, name: str, seconds: float) -> list[subprocess.Popen[bytes]]:
        """`perf record` of the whole machine (every process: where the cores went) to
        DIR/perf-NAME.data."""
        if shutil.which("perf") is None:
            print("perf not found (apt-get install linux-perf): no perf record", flush=True)
            return []
        directory = Path(self.args.perf)
        directory.mkdir(parents=True, exist_ok=True)
        log = (directory / "perf.log").open("ab")
        return [subprocess.Popen(["perf", "record", "-a", "-g", "-F", "199", "-o",
                                  str(directory / f"perf-{name}.data"), "--", "sleep",
                                  f"{seconds:.1f}"], stdout=log, stderr=subprocess.STDOUT)]

    def start_profile(self, seconds: float) -> list[subprocess.Popen[bytes]]:
        """py-spy of both servers to DIR/server-LABEL.txt."""
        directory = Path(self.args.profile)
        spies = start_py_spy({s.pids()[0]: directory / f"server-{s.label}.txt"
                              for s in self.servers}, seconds, native=self.args.native,
                             log=directory / "py-spy.log")
        if not spies:
            print(NOT_FOUND, flush=True)
        return spies

    async def ceiling(self) -> None:
        """The generator against a trivial relay (bench/realtime_relay.py): what it can drive at
        all."""
        args = self.args
        port = free_port()
        with (self.workdir / "relay.log").open("ab") as log:
            relay = await asyncio.create_subprocess_exec(
                sys.executable, str(BENCH / "realtime_relay.py"), str(port),
                stdout=log, stderr=log)
        self.extra_gen = [relay.pid]
        try:
            await asyncio.to_thread(wait_for_port, port)
            await self.connect_all(lambda pair, receiving: (
                f"ws://127.0.0.1:{port}/?c={pair.conversation_id}&r={int(receiving)}"))
            sent, cpu = await self.cpu.metered(self.senders.call(
                "closed_loop", phase="ceiling", concurrency=args.concurrency,
                duration=args.duration, warmup=args.warmup))
            await asyncio.sleep(1.0)
            got = await self.receivers.call("collect", phase="ceiling",
                                            measure_from=sent["measure_from"], end=sent["end"])
            self.add("ceiling", Row(
                "generator ceiling (trivial relay, same sockets)", got["in_window"] / args.duration,
                cpu=cpu, note=f"sent {sent['rate']:.0f}/s; the relay's CPU counts as gen",
                errors=problems(sent, got, sent["sent"] - sent["failed"] - got["delivered"])))
            await self.close_all()
        finally:
            self.extra_gen = []
            with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
                relay.terminate()  # our own child, by its handle
            await relay.wait()

    async def one_process(self) -> None:
        """One process with every socket: RSS at rest and after traffic."""
        await asyncio.to_thread(self.start_servers, "coalesced")
        try:
            a = self.servers[0]
            idle = rss_mib(a.pids()[0])
            connect_s = await self.connect_all(
                lambda pair, receiving: self.api_url(pair, receiving, a))
            await asyncio.sleep(1.0)
            with_sockets = rss_mib(a.pids()[0])
            phase = "memory"
            sent = await self.senders.call("open_loop", phase=phase, rate=self.args.rate,
                                           duration=min(self.args.duration, 5), warmup=0)
            await asyncio.sleep(self.drain_s())
            got = await self.receivers.call("collect", phase=phase,
                                            measure_from=sent["measure_from"], end=sent["end"])
            after = rss_mib(a.pids()[0])
            self.memory = {"sockets": len(self.pairs) * 2, "idle": idle,
                           "connected": with_sockets, "after": after, "messages": sent["sent"],
                           "connect_s": connect_s,
                           "problems": problems(sent, got, sent["sent"] - sent["failed"]
                                                - got["delivered"])}
            await self.close_all()
        finally:
            await asyncio.to_thread(self.stop_servers)

    # ---- the database's own ceilings

    async def database_ceilings(self) -> None:
        seconds = min(self.args.duration, 5.0)
        as_app = app_url(self.admin_url)
        admin = await asyncpg.create_pool(self.admin_url, min_size=DB_CONNECTIONS,
                                          max_size=DB_CONNECTIONS)
        listener = await asyncpg.connect(self.admin_url)
        heard = 0

        def count(*_args: Any) -> None:
            nonlocal heard
            heard += 1

        await listener.add_listener("vechat_bench", count)
        settings = Settings.from_env({}, database_url=as_app, pool_min=DB_CONNECTIONS,
                                     pool_max=DB_CONNECTIONS, jwt_secret=JWT_SECRET)
        database = db.Database(settings)
        await database.open()
        ringer = Ringer(as_app, settings.doorbell_batch_ms / 1000)
        ringer.start()
        # One conversation per task, spread over the organisations.
        step = max(1, len(self.pairs) // DB_TASKS)
        pairs = [self.pairs[(i * step) % len(self.pairs)] for i in range(DB_TASKS)]
        try:
            await admin.execute("CREATE TABLE IF NOT EXISTS bench_plain "
                                "(id bigserial PRIMARY KEY, v text NOT NULL)")

            async def plain(_i: int, n: int) -> None:
                await admin.execute("INSERT INTO bench_plain (v) VALUES ($1)", f"row {n}")

            async def with_notify(_i: int, n: int) -> None:
                # One round trip: BEGIN, insert, NOTIFY, COMMIT in one simple-protocol batch.
                await admin.execute("BEGIN; INSERT INTO bench_plain (v) VALUES ('row');"
                                    f" SELECT pg_notify('vechat_bench', '{n}'); COMMIT")

            def message(quiet: bool, ring: bool) -> Callable[[int, int], Awaitable[None]]:
                async def insert(i: int, n: int) -> None:
                    p = pairs[i]
                    identity = Identity(organisation_id=p.organisation_id, user_id=p.user_id,
                                        user_type="personnel")
                    database.ring = ringer.ring if ring else None
                    target: Any = database if ring else database.pool
                    async with db.tenant(target, identity, statement_timeout_ms=5000) as conn:
                        if quiet and not ring:
                            await conn.execute("SELECT set_config('vechat.doorbell', 'off', true)")
                        await conn.execute(
                            "INSERT INTO public.vechat_messages (organisation_id, conversation_id,"
                            " sender_id, sender_type, receiver_id, receiver_type, message)"
                            " VALUES ($1, $2, $3, 'personnel', $3, 'client', $4)",
                            p.organisation_id, p.conversation_id, p.user_id, f"db {n}")
                return insert

            variants: list[tuple[str, str, Callable[[int, int], Awaitable[None]]]] = [
                ("db-plain", "DB: single-row INSERT (autocommit)", plain),
                ("db-notify", "DB: single-row INSERT + pg_notify, one tx", with_notify),
                ("db-msg-trigger", "DB: message INSERT in db.tenant(), trigger NOTIFY",
                 message(False, False)),
                ("db-msg-off", "DB: message INSERT in db.tenant(), doorbell off",
                 message(True, False)),
                ("db-msg-coalesced", "DB: message INSERT in db.tenant(), coalesced ringer",
                 message(False, True)),
            ]
            for key, label, op in variants:
                await self.settle()
                rings_before, heard_before = ringer.rings, heard
                rate, cpu = await self.cpu.metered(closed_tasks(op, DB_TASKS, seconds))
                note = ""
                if key == "db-msg-coalesced":
                    rings = ringer.rings - rings_before
                    note = f"{rings / (rate * seconds):.2f} rings per commit"
                if key == "db-notify":
                    note = f"listener heard {heard - heard_before}"
                self.add(key, Row(label, rate, cpu=cpu, note=note))
        finally:
            database.ring = None
            await ringer.stop()
            await database.close()
            await listener.close()
            await admin.close()


def problems(sent: dict[str, Any], got: dict[str, Any], lost: int) -> str:
    """Anything that is not exactly-once, in order, without errors; empty when clean."""
    found = []
    for key in ("failed",):
        if sent.get(key):
            found.append(f"{sent[key]} sends failed")
    if got.get("duplicates"):
        found.append(f"{got['duplicates']} duplicates")
    if got.get("gaps"):
        found.append(f"{got['gaps']} seq gaps")
    if got.get("resets"):
        found.append(f"{got['resets']} resets")
    if got.get("closed"):
        found.append(f"{got['closed']} sockets closed")
    if got.get("errors"):
        found.append(f"{got['errors']} error frames: {got.get('error_sample')}")
    if lost:
        found.append(f"{lost} acked but not delivered")
    return "; ".join(found)


# =============================================================================================
# Report

TABLE = [  # (result key, shown when present)
    "ceiling",
    "lat-coalesced", "lat-ab", "lat-transaction",
    "max-coalesced", "max-ab", "max-transaction", "max-poll", "max-off",
    "cost-coalesced", "cost-ab", "cost-transaction", "cost-poll", "cost-off",
    "db-plain", "db-notify", "db-msg-trigger", "db-msg-off", "db-msg-coalesced",
]


def merged(rows: list[Row]) -> Row:
    """Median over rounds: the rate's median row (CPU's, at a fixed rate), median latencies."""
    if len(rows) == 1:
        return rows[0]
    median = middle(rows)
    p50s = [r.p50 for r in rows if r.p50 is not None]
    p99s = [r.p99 for r in rows if r.p99 is not None]
    errors = "; ".join(sorted({r.errors for r in rows if r.errors}))
    note = median.note
    if p99s:
        # Each round's p99 and pacing, in order: "p99 <= X in N of N runs" is read from here.
        note = ("rounds p99 " + ", ".join(f"{p * 1000:.1f}" for p in p99s) + " ms; "
                + ", ".join(PACED.findall(" ".join(r.note for r in rows))) + "; " + note)
    return Row(median.label, statistics.median(r.rate or 0.0 for r in rows),
               statistics.median(p50s) if p50s else None,
               statistics.median(p99s) if p99s else None, median.cpu, note, errors)


PACED = re.compile(r"paced [0-9]+% / [0-9]+%")


RESULTS = Table(
    Column("what", 52, left=True, gap=""), Column("per s", 7, ".0f"), Column("p50 ms", 7),
    Column("p99 ms", 7), Column("cores: api   pg  gen other", 26, gap="  "),
    Column("CPU us/msg: api   pg", 20), Column("note", left=True, gap="  "),
)


def report(bench: Bench, header: list[str]) -> list[str]:
    out = ["", *header, "", RESULTS.header()]
    for key in TABLE:
        if key not in bench.results:
            continue
        row = merged(bench.results[key])
        per_op = ""
        if key.startswith(("lat", "max", "cost")):
            per_op = cpu_per_op(row.cpu, row.rate)
        elif key.startswith("db"):
            per_op = cpu_per_op(row.cpu, row.rate, shown=("pg",))
        out.append(RESULTS.row(row.label, row.rate or 0, ms(row.p50), ms(row.p99), cores(row.cpu),
                               per_op, row.note))
        if row.errors:
            out.append(f"{'':52s} PROBLEMS: {row.errors}")
    out.append("")

    ratios = Ratios(bench.results, 52, 16)
    paired, cpu_paired = ratios.rates, ratios.cpus

    def ratio(label: str, values: list[float], target: str = "") -> None:
        out.extend(ratios.row(label, values, target))

    out.append("ratios (median over rounds of each round's pair)")
    ratio("delivered coalesced / sent with doorbell off", paired("max-coalesced", "max-off"),
          "(target >= 0.9)")
    ratio("  same by CPU/msg (api+pg)", cpu_paired("max-coalesced", "max-off"))
    ratio("delivered transaction / sent with doorbell off", paired("max-transaction", "max-off"))
    ratio("delivered coalesced / delivered transaction",
          paired("max-coalesced", "max-transaction"))
    ratio("delivered ab / sent with doorbell off", paired("max-ab", "max-off"))
    ratio("delivered ab / delivered coalesced", paired("max-ab", "max-coalesced"))
    ratio("delivered coalesced / delivered by 1 s poll", paired("max-coalesced", "max-poll"))
    ratio("delivered by 1 s poll / sent with doorbell off", paired("max-poll", "max-off"))
    everything = ("api", "pg", "gen")
    ratio("CPU/msg at fixed rate (api+pg+gen): off / coalesced",
          cpu_paired("cost-coalesced", "cost-off", everything))
    ratio("CPU/msg at fixed rate (api+pg+gen): off / poll",
          cpu_paired("cost-poll", "cost-off", everything))
    ratio("DB: INSERT+NOTIFY / plain INSERT", paired("db-notify", "db-plain"))
    ratio("DB: message INSERT, trigger NOTIFY / doorbell off",
          paired("db-msg-trigger", "db-msg-off"))
    ratio("DB: message INSERT, coalesced / doorbell off", paired("db-msg-coalesced", "db-msg-off"))
    out.append("")
    out.append("memory (RSS MiB per server process)")
    for mode in ALL_MODES:
        rows = bench.results.get(f"rss-{mode}", [])
        if rows:
            out.append(f"  {mode:12s} A / B with {len(bench.pairs)} sockets each, after the runs: "
                       + ", ".join(r.note for r in rows))
    m = bench.memory
    if m:
        trouble = f"; PROBLEMS: {m['problems']}" if m["problems"] else ""
        out.append(f"  one process with all {m['sockets']} sockets: {m['connected']:.0f} "
                   f"connected, {m['after']:.0f} after {m['messages']} messages "
                   f"(idle before: {m['idle']:.0f}; {m['sockets']} sockets up in "
                   f"{m['connect_s']:.1f} s){trouble}")
    out.append("")
    out.append("targets")
    lat = merged(bench.results["lat-coalesced"]) if "lat-coalesced" in bench.results else None
    if lat is not None and lat.p50 is not None and lat.p99 is not None:
        met = lat.p50 <= 0.005 and lat.p99 <= 0.025
        out.append(f"  latency at {bench.args.rate:g}/s, coalesced: p50 {ms(lat.p50)} ms "
                   f"(<= 5), p99 {ms(lat.p99)} ms (<= 25): {'met' if met else 'MISSED'}")
    both = [v for v in paired("max-coalesced", "max-off") if not math.isnan(v)]
    if both:
        value = statistics.median(both)
        out.append(f"  delivered / sent without doorbell: {value:.2f} (>= 0.9): "
                   f"{'met' if value >= 0.9 else 'MISSED'}")
    for run, lines in bench.statements.items():
        out.append(f"statements, {run} (per message sent: calls, plans, exec and plan time; last"
                   " round)")
        out.extend(lines)
    for run, lines in bench.table_reads.items():
        out.append(f"tables read and written, {run} (per message sent)")
        out.extend(lines)
    for run, lines in bench.pg_cpu.items():
        out.append(f"PostgreSQL CPU by process kind, {run}")
        out.extend(lines)
    for run, lines in bench.waits.items():
        out.append(f"API connections not idle, {run} (mean per sample)")
        out.extend(lines)
    if m:
        worst = max(m["connected"], m["after"])
        out.append(f"  RSS with {m['sockets']} sockets in one process: {worst:.0f} MiB (<= 300): "
                   f"{'met' if worst <= 300 else 'MISSED'}")
    return out


# =============================================================================================
# Main


async def orchestrate(bench: Bench, header: list[str]) -> None:
    args = bench.args
    await bench.senders.start()
    await bench.receivers.start()
    # Counting the doorbell's notifications takes a listener of our own: one more backend woken
    # by every NOTIFY, which the servers' CPU would not otherwise pay for -- so only on demand.
    listener = await asyncpg.connect(bench.admin_url) if args.statements else None

    def heard(*_args: Any) -> None:
        bench.notifies += 1

    if listener is not None:
        await listener.add_listener("vechat_events", heard)
    try:
        say = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)  # noqa: E731
        if "ceiling" in args.phases:
            say("generator ceiling")
            await bench.ceiling()
        for round_no in range(args.rounds):
            if "db" in args.phases:
                say(f"round {round_no + 1}/{args.rounds}: database ceilings")
                await bench.database_ceilings()
            modes = tuple(m for m in ALL_MODES if m in args.modes)
            order = modes[round_no % len(modes):] + modes[:round_no % len(modes)]
            for mode in order:
                say(f"round {round_no + 1}/{args.rounds}: {mode}")
                await bench.run_mode(mode, round_no, round_no == args.rounds - 1)
        if "memory" in args.phases:
            say("one process with every socket")
            await bench.one_process()
        print("\n".join(report(bench, header)))
        for mode in args.modes if args.profile else ():
            found = sorted(Path(args.profile).glob(f"server-{mode}-*.txt"))
            print()
            print(f"profile of both servers, {mode} maximum-rate run ({args.profile}):")
            print("\n".join(summarise_profile(found) if found else ["(no samples)"]))
    finally:
        if listener is not None:
            await listener.close()
        await bench.senders.stop()
        await bench.receivers.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the doorbell modes")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s of the latency run")
    parser.add_argument("--cost-rate", type=float, default=700.0,
                        help="CPU per message at this fixed rate, in every mode (0: skip)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="senders in closed loop for the maximum rate")
    parser.add_argument("--sockets", type=int, default=1000,
                        help="WebSockets in all (half senders, half receivers)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 200 sockets, 1 s per measurement, one round")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy both servers during each maximum-rate run of the last round")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--perf", metavar="DIR",
                        help="perf record -a -g (whole machine) during each maximum-rate and"
                             " fixed-rate run of the last round: DIR/perf-MODE.data and"
                             " DIR/perf-MODE-RATE.data, read with perf report -i")
    parser.add_argument("--modes", type=lambda text: text.split(","), default=list(MODES),
                        help=f"doorbell modes to run, comma-separated (default: {','.join(MODES)})")
    parser.add_argument("--phases", type=lambda text: text.split(","), default=list(PHASES),
                        help=f"what to measure, comma-separated (default: {','.join(PHASES)})")
    parser.add_argument("--ab", type=server_env, default={}, metavar="VECHAT_X=V[,VECHAT_Y=W]",
                        help="also run the coalesced doorbell with these server settings (mode"
                             " 'ab'), in the same rounds as the others: an A/B of settings that"
                             " the spread between runs would hide")
    parser.add_argument("--statements", action="store_true",
                        help="pg_stat_statements: PostgreSQL's top statements per maximum-rate and"
                             " fixed-rate run")
    args = parser.parse_args(argv)
    if args.ab and AB not in args.modes:
        args.modes.append(AB)
    modes = ALL_MODES if args.ab else MODES
    for option, given, known in (("--modes", args.modes, modes), ("--phases", args.phases, PHASES)):
        if unknown := sorted(set(given) - set(known)):
            parser.error(f"{option}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if args.quick:
        args.duration, args.warmup, args.rounds, args.sockets = 1.0, 0.5, 1, 200
        args.cost_rate = min(args.cost_rate, args.rate)
    pairs_per_org = max(1, args.sockets // 2 // ORGANISATIONS)
    statements = {"shared_preload_libraries": "pg_stat_statements",
                  "pg_stat_statements.track": "all", "pg_stat_statements.track_planning": "on"}

    started = time.perf_counter()
    with workdir("realtime") as work, private_cluster(
        work, durable=True, settings=statements if args.statements else None
    ) as pg:
        admin_url = migrated_database(pg)
        if args.statements:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        pairs = seed(admin_url, pairs_per_org)
        bench = Bench(args, work, pg, admin_url, pairs,
                      WorkerProcess("senders", work / "senders.log"),
                      WorkerProcess("receivers", work / "receivers.log"))
        header = [
            f"vechat-rls realtime benchmark: {os.cpu_count()} CPUs (shared by everything below),"
            f" Python {platform.python_version()}, PostgreSQL {server_version(admin_url)}"
            " (durable: fsync, synchronous_commit on)",
            f"servers: 2 x vechat-rls serve (1 uvicorn worker, pool 10 each); "
            f"{len(pairs) * 2} WebSockets over {ORGANISATIONS} organisations: {len(pairs)} "
            "senders (personnel) and their receivers (clients) on the other process",
            f"generator: 2 processes (senders, receivers; uvloop + wsclient.py); latency = receiver"
            f" reads the frame - scheduled send, open loop at {args.rate:g}/s; maximum: "
            f"{args.concurrency} senders in closed loop; {args.duration:g} s per measurement after"
            f" {args.warmup:g} s warm-up; medians over {args.rounds} round(s)",
            "cores: CPU used meanwhile by the two servers, PostgreSQL, the generator (its 2"
            " processes, this one, the relay) and everything else on the machine (noise)",
            f"reproduce: {reproduce(__file__, argv)}",
        ]
        if args.ab:
            header.insert(-1, "ab: the coalesced doorbell with "
                          + ", ".join(f"{k}={v}" for k, v in args.ab.items()))
        print(f"setup {time.perf_counter() - started:.1f} s ({len(pairs)} conversations)",
              flush=True)
        try:
            event_loop_runner()(orchestrate(bench, header))
        finally:
            bench.stop_servers()
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
