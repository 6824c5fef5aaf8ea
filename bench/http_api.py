"""Messages per second through the HTTP API, against the same inserts straight through asyncpg.

Starts its own durable PostgreSQL (fsync and synchronous_commit on, like production), migrates
it, seeds 10 organisations (personnel, clients, contacts, conversations, message history) and
starts `vechat-rls serve` four times: as `vechat_app` (the real thing), as a role with
BYPASSRLS (the cost of the policies), as `vechat_app` with the NOTIFY doorbell switched off
(the cost of the doorbell, which docs/design.md asks every benchmark to watch) and as
`vechat_app` on a copy of the database whose policies trust plain settings, the way contexts
were set before they were signed (`VECHAT_CONTEXT_MODE=settings`: the cost of the signed
context). Then, on this machine, with the load generator in this process:

* the generator's own ceiling, against a trivial HTTP server in another process, and the
  Litestar floor (`GET /healthz`);
* sustained `POST /api/v1/conversations/{id}/messages` with 32 keep-alive clients over the 10
  organisations, each its own sender and conversation, every request a new `client_id`;
* the physical baseline in the same run: single-row asyncpg inserts into `vechat_messages`
  (same server, same 32 tasks, as many connections as the servers' pools): inside the same
  tenant transaction the API uses (`db.tenant`: BEGIN + SET LOCAL batch, INSERT, COMMIT), and
  plain autocommit as the bypassing role;
* latency (p50/p99) at half the sustained rate, open loop: requests leave on a fixed schedule
  whatever the server does, and latency counts from the scheduled time (no coordinated
  omission);
* `GET` of a conversation page and of the conversation list.

Insert variants run in interleaved rounds and report the median (the machine is shared; load
drifts). The rate limit (60 messages/min per user) is raised for the servers with
`VECHAT_RATE_LIMIT_PER_MIN`, so it never answers 429; its counter statement still runs.

`--ab-src DIR` adds a server, as `vechat_app`, from another source tree (e.g. `git archive
<commit> | tar -x -C DIR`: its `src/` is put first on the server's `PYTHONPATH`), and measures
its sends and `GET /healthz` in the same interleaved rounds as this tree's: the cost of a change
to the serving path, with the machine's drift on both sides.

The servers run with `vechat-rls serve`'s defaults (workers: one per usable CPU; access log
off) unless `--workers N` or `--access-log on|off` says otherwise. The API spends ~0.6-1 ms of
CPU per request (the "CPU us/op" column), so one process caps at about one core. `--profile DIR`
then samples the `vechat_app` server's workers with py-spy (`pip install py-spy`) under send
load and prints where their time goes. `--pg-profile DIR` does the same for PostgreSQL with
`perf` (DWARF call graphs: PostgreSQL's binaries carry symbols) during send runs of the signed,
the unsigned and the BYPASSRLS servers (`--rounds` each, rotating order): the share of each
phase of a POST (commit, vechat.enter, context reads, foreign-key and CHECK constraints, plan
cache, executor start-up, ...) in microseconds per POST, side by side, and what the signed
context and the policies add to each.

    .venv/bin/python bench/http_api.py [--duration 5] [--rounds 3] [--workers N] [--quick]
                                       [--profile DIR [--native]] [--pg-profile DIR]
                                       [--access-log on|off] [--keep] [--ab-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from harness.cluster import (
    BYPASS_ROLE,
    app_url,
    bypass_url,
    migrated_database,
    private_cluster,
    server_version,
    unsigned_copy,
    workdir,
)
from harness.meters import CpuMeter, children, closed_tasks, event_loop_runner, percentile
from harness.profiling import (
    NOT_FOUND,
    PERF_NOT_FOUND,
    perf_stacks,
    start_perf,
    start_py_spy,
    summarise_pg_profile,
    summarise_profile,
)
from harness.report import Column, Ratios, Table, cores, cpu_per_op, middle, ms, reproduce
from harness.seed import Seeder, seed_organisations
from harness.servers import POOL_MAX, RATE_LIMIT, ApiServer, start_all, token, wait_for_port
from vechat_rls import db
from vechat_rls.api.serving import default_workers
from vechat_rls.identity import Identity
from vechat_rls.pgserver import free_port

ORGANISATIONS = 10
CLIENTS = 32
PERSONNEL_PER_ORG = 4  # ceil(CLIENTS / ORGANISATIONS): each bench client is its own sender
CLIENTS_PER_ORG = 20  # customers: every personnel has a conversation with each (the list GET)
HISTORY = 60  # messages already in each bench conversation (a full first page)

# ---------------------------------------------------------------------------------------------
# Setup: seed, the load clients


@dataclass(frozen=True)
class BenchClient:
    """One of the 32 load clients: a personnel user sending into their own conversation."""

    index: int
    organisation_id: int
    user_id: int  # personnel id, the sender
    peer_id: int  # client id, the receiver
    conversation_id: int
    token: str

    @property
    def identity(self) -> Identity:
        return Identity(
            organisation_id=self.organisation_id, user_id=self.user_id, user_type="personnel"
        )


def bench_clients(conversations: dict[tuple[int, int, int], int]) -> list[BenchClient]:
    clients = []
    for index in range(CLIENTS):
        org, user = index % ORGANISATIONS + 1, index // ORGANISATIONS + 1
        access = token(org, user, "personnel", name=f"Personnel {user}")
        clients.append(BenchClient(index, org, user, user, conversations[(org, user, user)],
                                   access))
    return clients


def seed(admin_url: str) -> dict[tuple[int, int, int], int]:
    """Per organisation, personnel 1..4 and clients 1..20, a conversation for every pair, and its
    history (HISTORY messages where personnel and client share their number, else 2);
    → {(org, personnel, client): conversation id}."""
    def history(seeder: Seeder, org: int, conversation_id: int, p: int, c: int) -> None:
        seeder.messages(org, conversation_id, p, c, [
            f"seed message {n} from personnel {p} to client {c}"
            for n in range(HISTORY if c == p else 2)])

    return seed_organisations(admin_url, ORGANISATIONS, PERSONNEL_PER_ORG, CLIENTS_PER_ORG,
                              lambda _p: range(1, CLIENTS_PER_ORG + 1), history)


# ---------------------------------------------------------------------------------------------
# The generator's ceiling

TRIVIAL_SERVER = textwrap.dedent("""
    import asyncio, sys
    RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\ncontent-type: text/plain\\r\\n\\r\\nok"
    class Trivial(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""
        def data_received(self, data):
            self.buffer += data
            while True:
                head, sep, rest = self.buffer.partition(b"\\r\\n\\r\\n")
                if not sep:
                    return
                length = 0
                for line in head.lower().split(b"\\r\\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line[15:])
                if len(rest) < length:
                    return
                self.buffer = rest[length:]
                self.transport.write(RESPONSE)
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Trivial, "127.0.0.1", int(sys.argv[1]))
        await server.serve_forever()
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
""")


@contextlib.contextmanager
def trivial_server() -> Iterator[int]:
    """A bare asyncio HTTP/1.1 responder in another process: what the generator alone can do."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(port)])
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# The load generator: a lean keep-alive HTTP/1.1 client on asyncio streams (uvloop).
# httpx costs several times more CPU per request, and on 2 cores every cycle the generator
# burns is taken from the server; the ceiling line of the report shows what is left.


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        """Send one request, read its whole response; the status code."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif status not in (204, 304):
            raise HttpError(f"response without length: {head[:200]!r}")
        return status

    def close(self) -> None:
        self.writer.close()


RequestMaker = Callable[[int, int], bytes]
"""(client index, request number) → the raw request bytes."""


def http_get(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()



@dataclass
class Result:
    rate: float  # completed operations per second
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy, per process group

    def record(self, status: int, latency: float) -> None:
        """One response of the measured window (a latency only for a success)."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 400:
            self.errors += 1
        else:
            self.latencies.append(latency)

    def percentile(self, p: float) -> float | None:
        return percentile(self.latencies, p)


async def closed_loop(
    port: int, make: RequestMaker, clients: int, duration: float, warmup: float
) -> Result:
    """`clients` keep-alive connections, each sending its next request as soon as one returns."""
    conns = [await Connection.open(port) for _ in range(clients)]
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + duration
    result = Result(rate=0.0)

    async def client(index: int, conn: Connection) -> None:
        number = 0
        while (now := time.perf_counter()) < stop:
            status = await conn.request(make(index, number))
            number += 1
            if now >= measure_from:
                result.record(status, time.perf_counter() - now)

    try:
        await asyncio.gather(*(client(i, c) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            conn.close()
    result.rate = len(result.latencies) / (time.perf_counter() - measure_from)
    return result


async def open_loop(
    port: int, make: RequestMaker, clients: int, rate: float, duration: float, warmup: float
) -> Result:
    """Requests leave at a fixed `rate` on up to `clients` connections; latency is measured from
    each request's scheduled time, so a stalled server is charged for the queue it causes."""
    idle: asyncio.Queue[tuple[int, Connection]] = asyncio.Queue()
    conns = [await Connection.open(port) for _ in range(clients)]
    for index, conn in enumerate(conns):
        idle.put_nowait((index, conn))
    result = Result(rate=0.0)
    start = time.perf_counter() + 0.01
    measure_from = start + warmup
    total = int(rate * (warmup + duration))
    tasks: set[asyncio.Task[None]] = set()
    counters = [0] * clients

    async def one(scheduled: float) -> None:
        index, conn = await idle.get()
        try:
            status = await conn.request(make(index, counters[index]))
            counters[index] += 1
        finally:
            idle.put_nowait((index, conn))
        if scheduled >= measure_from:
            result.record(status, time.perf_counter() - scheduled)

    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and start + sent / rate <= now:
            task = asyncio.create_task(one(start + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    for conn in conns:
        conn.close()
    result.rate = len(result.latencies) / duration
    return result


async def httpx_ceiling(port: int, clients: int, duration: float) -> float:
    """httpx.AsyncClient against the same trivial server, for comparison."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        stop = time.perf_counter() + duration
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await client.get("/")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# The physical baseline: a plain single-row INSERT into a message-shaped table

# vechat_messages' shape as shipped — its columns, defaults, generated full-text column, checks
# and indexes (`LIKE … INCLUDING ALL`) — and nothing of vechat's own work: no trigger, no foreign
# key, no row-level security, no NOTIFY. One durable single-row commit of a message, the floor
# that issue 16's target (the API at >= 0.30x of it) is measured against.
PLAIN_TABLE_SQL = """
DROP TABLE IF EXISTS public.bench_plain_messages;
CREATE TABLE public.bench_plain_messages (LIKE public.vechat_messages INCLUDING ALL);
-- vechat_messages takes its ids from a per-organisation counter in a trigger (db/functions/
-- 01_ids.sql), which is vechat's own work: the plain table takes them from an identity.
ALTER TABLE public.bench_plain_messages ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
"""
PLAIN_INSERT = """
INSERT INTO public.bench_plain_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type,
     message, client_id)
VALUES ($1, $2, $3, 'personnel', $4, 'client', $5, $6)
RETURNING id, created_at
"""


async def plain_inserts(
    pool: db.Pool, clients: Sequence[BenchClient], duration: float, warmup: float, *, tag: str
) -> Result:
    """The physical baseline: one task per bench client, each an autocommit single-row INSERT
    into `bench_plain_messages` (one round trip, one durable commit) as soon as the last one
    committed."""

    async def insert(i: int, number: int) -> None:
        c = clients[i]
        await pool.fetchrow(PLAIN_INSERT, c.organisation_id, c.conversation_id, c.user_id,
                            c.peer_id, f"bench message {number}", f"{tag}-{c.index}-{number}")

    return Result(rate=await closed_tasks(insert, len(clients), duration, warmup))


# ---------------------------------------------------------------------------------------------
# vechat's own insert: asyncpg straight into vechat_messages

RAW_INSERT = """
INSERT INTO public.vechat_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type,
     message, client_id)
VALUES ($1, $2, $3, 'personnel', $4, 'client', $5, $6)
RETURNING id, created_at
"""


async def raw_inserts(
    pool: db.Pool,
    clients: Sequence[BenchClient],
    duration: float,
    warmup: float,
    *,
    batch: bool,
    tag: str,
) -> Result:
    """One task per bench client, each inserting its next message as soon as the last commits.

    `batch=False`: `db.tenant()` as the API uses it (BEGIN + SET LOCAL batch, INSERT, COMMIT: 3
    round trips); `batch=True`: all of it in one simple-protocol batch (1 round trip, the floor
    of a tenant transaction; the trigger functions need the tenant context even for a role that
    bypasses row-level security, because they run as the table owner, under forced RLS).
    """
    async def insert(i: int, number: int) -> None:
        c = clients[i]
        args = (c.organisation_id, c.conversation_id, c.user_id, c.peer_id,
                f"bench message {number}", f"{tag}-{c.index}-{number}")
        if batch:
            async with pool.acquire() as conn:
                # Signed for this connection, as db.tenant() does; literals only: integers and
                # text of our own making.
                begin = db.begin_sql(c.identity, readonly=False, statement_timeout_ms=5000,
                                     token=await db.context.sign_for(conn, c.identity))
                await conn.execute(
                    f"{begin}; INSERT INTO public.vechat_messages (organisation_id,"
                    " conversation_id, sender_id, sender_type, receiver_id, receiver_type,"
                    f" message, client_id) VALUES ({args[0]}, {args[1]}, {args[2]}, 'personnel',"
                    f" {args[3]}, 'client', '{args[4]}', '{args[5]}'); COMMIT"
                )
        else:
            async with db.tenant(pool, c.identity, statement_timeout_ms=5000) as conn:
                await conn.fetchrow(RAW_INSERT, *args)

    return Result(rate=await closed_tasks(insert, len(clients), duration, warmup))


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Context:
    args: argparse.Namespace
    clients: list[BenchClient]
    conversations: dict[tuple[int, int, int], int]
    servers: dict[str, ApiServer]
    pools: dict[str, db.Pool]
    paths: set[str]  # routes the app serves (from its OpenAPI document)
    cpu: CpuMeter
    postmaster: int
    runs: dict[str, list[Result]] = field(default_factory=dict)  # every round of the inserts
    run_tag: str = field(default_factory=lambda: f"r{int(time.time())}")


PLAIN = "physical baseline: plain INSERT, message-shaped table"
RAW_TENANT = "raw asyncpg INSERT in db.tenant() as vechat_app (3 RT)"
RAW_BATCH = "raw asyncpg INSERT, whole tenant tx in one batch (1 RT)"
RAW_BYPASS = "raw asyncpg INSERT in db.tenant() as BYPASSRLS role"
RAW_QUIET = "raw asyncpg INSERT in db.tenant(), doorbell off"
API_APP = "POST messages as vechat_app"
API_BYPASS = "POST messages as BYPASSRLS role"
API_QUIET = "POST messages as vechat_app, doorbell off"
API_UNSIGNED = "POST messages as vechat_app, unsigned context"
API_AB = "POST messages as vechat_app, --ab-src tree"
HEALTHZ_APP = "GET /healthz, this tree"
HEALTHZ_AB = "GET /healthz, --ab-src tree"

ORDER = [HEALTHZ_AB, HEALTHZ_APP, API_QUIET, API_AB, API_APP, API_UNSIGNED, PLAIN, API_BYPASS,
         RAW_BYPASS, RAW_TENANT, RAW_QUIET, RAW_BATCH]

SEND_PATH = "/api/v1/conversations/{conversation_id}/messages"
PAGE_PATH = "/api/v1/conversations/{conversation_id}/messages"
LIST_PATH = "/api/v1/conversations"


def send_maker(ctx: Context, tag: str) -> RequestMaker:
    """A new message with a new `client_id` on every call (retries would return the original)."""
    heads = [
        (f"POST {SEND_PATH.format(conversation_id=c.conversation_id)} HTTP/1.1\r\n"
         f"Host: 127.0.0.1\r\nAuthorization: Bearer {c.token}\r\n"
         "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n").encode()
        for c in ctx.clients
    ]

    def make(index: int, number: int) -> bytes:
        body = b'{"client_id":"%s-%d-%d","body":"bench message %d"}' % (
            tag.encode(), index, number, number)
        return heads[index] % len(body) + body

    return make


def fixed_maker(requests: Sequence[bytes]) -> RequestMaker:
    return lambda index, _number: requests[index % len(requests)]


def available_paths(port: int) -> set[str]:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/schema/openapi.json", timeout=10
    ) as response:
        return set(json.load(response).get("paths", {}))



Row = tuple[str, Result | None, str]


async def metered(ctx: Context, run: Awaitable[Result]) -> Result:
    """`run`, with the CPU each process group burnt meanwhile (in cores) attached."""
    result, cpu = await ctx.cpu.metered(run)
    result.cpu = cpu
    return result


async def measure(ctx: Context) -> list[Row]:
    args = ctx.args
    warmup = args.warmup
    sends = SEND_PATH in ctx.paths
    rows: list[Row] = []

    with trivial_server() as port:
        ceiling = await metered(ctx, closed_loop(port, fixed_maker([http_get("/")]), CLIENTS,
                                                 args.duration, warmup))
        rows.append(("generator ceiling: trivial asyncio server, 32 conns", ceiling, ""))
        if not args.quick:
            rate = await httpx_ceiling(port, CLIENTS, args.duration)
            rows.append(("  (httpx.AsyncClient, same server, for comparison)", Result(rate), ""))
    app = ctx.servers["app"]
    rows.append(("GET /healthz (Litestar floor, no database)",
                 await metered(ctx, closed_loop(app.port, fixed_maker([http_get("/healthz")]),
                                                CLIENTS, args.duration, warmup)), ""))

    # Inserts, interleaved rounds; the median of each.
    variants: list[tuple[str, Callable[[str], Awaitable[Result]]]] = [
        (PLAIN,
         lambda tag: plain_inserts(ctx.pools["plain"], ctx.clients, args.duration, warmup,
                                   tag=tag)),
        (RAW_TENANT,
         lambda tag: raw_inserts(ctx.pools["app"], ctx.clients, args.duration, warmup,
                                 batch=False, tag=tag)),
        (RAW_BATCH,
         lambda tag: raw_inserts(ctx.pools["app"], ctx.clients, args.duration, warmup,
                                 batch=True, tag=tag)),
        (RAW_BYPASS,
         lambda tag: raw_inserts(ctx.pools["bypass"], ctx.clients, args.duration, warmup,
                                 batch=False, tag=tag)),
        (RAW_QUIET,
         lambda tag: raw_inserts(ctx.pools["quiet"], ctx.clients, args.duration, warmup,
                                 batch=False, tag=tag)),
    ]
    if sends:
        for key, label in (("app", API_APP), ("bypass", API_BYPASS), ("quiet", API_QUIET),
                           ("unsigned", API_UNSIGNED), ("ab", API_AB)):
            if key not in ctx.servers:
                continue
            port = ctx.servers[key].port
            variants.append((label, lambda tag, port=port: closed_loop(  # type: ignore[misc]
                port, send_maker(ctx, tag), CLIENTS, args.duration, warmup)))
    if "ab" in ctx.servers:
        healthz = fixed_maker([http_get("/healthz")])
        for key, label in (("app", HEALTHZ_APP), ("ab", HEALTHZ_AB)):
            port = ctx.servers[key].port
            variants.append((label, lambda _tag, port=port: closed_loop(  # type: ignore[misc]
                port, healthz, CLIENTS, args.duration, warmup)))
    # Pairs that make a ratio run back to back, and every other round in reverse order, so a
    # drift in the machine's load touches both sides of a ratio alike.
    variants.sort(key=lambda v: ORDER.index(v[0]))
    runs: dict[str, list[Result]] = {label: [] for label, _ in variants}
    for round_number in range(args.rounds):
        order = variants if round_number % 2 == 0 else variants[::-1]
        for label, run in order:
            tag = f"{ctx.run_tag}-{round_number}-{ORDER.index(label)}"
            runs[label].append(await metered(ctx, run(tag)))
    ctx.runs = runs

    for label, _ in variants:
        spread = ", ".join(f"{r.rate:.0f}" for r in runs[label])
        rows.append((label, middle(runs[label]), f"rounds: {spread}" if args.rounds > 1 else ""))

    if sends:
        sustained = middle(runs[API_APP]).rate
        half = sustained / 2
        rows.append((f"POST messages at {half:.0f}/s, open loop (half of sustained)",
                     await metered(ctx, open_loop(app.port, send_maker(ctx, f"{ctx.run_tag}-open"),
                                                  CLIENTS, half, args.duration, warmup)),
                     "latency from schedule"))
    else:
        rows.append(("POST messages: route not served yet", None, ""))
    if PAGE_PATH in ctx.paths:
        pages = [http_get(PAGE_PATH.format(conversation_id=c.conversation_id) + "?limit=50",
                          c.token) for c in ctx.clients]
        rows.append((f"GET conversation page (limit 50 of {HISTORY}+)",
                     await metered(ctx, closed_loop(app.port, fixed_maker(pages), CLIENTS,
                                                    args.duration, warmup)), ""))
    else:
        rows.append(("GET conversation page: route not served yet", None, ""))
    if LIST_PATH in ctx.paths:
        lists = [http_get(LIST_PATH, c.token) for c in ctx.clients]
        rows.append((f"GET conversation list ({CLIENTS_PER_ORG} conversations)",
                     await metered(ctx, closed_loop(app.port, fixed_maker(lists), CLIENTS,
                                                    args.duration, warmup)), ""))
    else:
        rows.append(("GET conversation list: route not served yet", None, ""))
    return rows




async def profile(ctx: Context, directory: Path) -> list[str]:
    """py-spy on every worker of the vechat_app server during one more send run."""
    server = ctx.servers["app"]
    workers = [pid for pid in children(server.pids()[0])
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    outputs = {pid: directory / f"worker-{pid}.txt" for pid in workers}
    spies = start_py_spy(outputs, ctx.args.duration + ctx.args.warmup, native=ctx.args.native,
                         log=directory / "py-spy.log")
    if not spies:
        return [NOT_FOUND]
    await asyncio.sleep(0.5)
    result = await metered(ctx, closed_loop(server.port, send_maker(ctx, f"{ctx.run_tag}-prof"),
                                            CLIENTS, ctx.args.duration, ctx.args.warmup))
    for spy in spies:
        await asyncio.to_thread(spy.wait)
    header = [f"profile of {len(workers)} worker(s) under POST load ({result.rate:.0f}/s while "
              f"sampled; cores api {result.cpu['api']:.2f} pg {result.cpu['pg']:.2f} gen "
              f"{result.cpu['gen']:.2f}); stacks in {directory}"]
    found = [o for o in outputs.values() if o.exists()]
    if not found:
        return [*header, f"py-spy wrote nothing; see {directory / 'py-spy.log'}"]
    return header + summarise_profile(found)


# The servers `--pg-profile` samples, as its columns: the real thing and its two A/Bs.
PG_PROFILED = {"app": "signed", "unsigned": "unsigned", "bypass": "BYPASSRLS"}


async def pg_profile(ctx: Context, directory: Path) -> list[str]:
    """perf on PostgreSQL during more send runs of the signed server, the unsigned one and the
    BYPASSRLS one, in rotating order round after round (the machine drifts): where a POST's
    PostgreSQL CPU goes, phase by phase, and what the signed context and the policies add."""
    directory.mkdir(parents=True, exist_ok=True)
    seconds = ctx.args.duration + ctx.args.warmup
    keys = list(PG_PROFILED)
    samples: dict[str, list[list[str]]] = {key: [] for key in keys}
    per_op: dict[str, list[float]] = {key: [] for key in keys}
    rates: dict[str, list[float]] = {key: [] for key in keys}
    for n in range(ctx.args.rounds):
        for key in keys[n % len(keys):] + keys[:n % len(keys)]:
            recording = directory / f"perf-{key}-{n}.data"
            perf = start_perf(children(ctx.postmaster), seconds, recording,
                              directory / "perf.log")
            if perf is None:
                return [PERF_NOT_FOUND]
            await asyncio.sleep(0.5)
            result = await metered(ctx, closed_loop(
                ctx.servers[key].port, send_maker(ctx, f"{ctx.run_tag}-pgprof-{key}-{n}"),
                CLIENTS, ctx.args.duration, ctx.args.warmup))
            await asyncio.to_thread(perf.wait)
            found = await asyncio.to_thread(perf_stacks, recording)
            if not found or not result.rate:
                return [f"perf recorded nothing; see {directory / 'perf.log'}"]
            samples[key] += found
            per_op[key].append(result.cpu["pg"] / result.rate * 1e6)
            rates[key].append(result.rate)
    shares = {key: summarise_pg_profile(found) for key, found in samples.items()}
    cost = {key: statistics.median(values) for key, values in per_op.items()}
    us = {key: {phase: share * cost[key] for phase, share in shares[key].items()} for key in keys}
    lines = [
        f"PostgreSQL under POST load: perf (DWARF call graphs, 199 Hz) of the cluster's processes,"
        f" {ctx.args.rounds} round(s); recordings in {directory}; POST/s while sampled: "
        + "; ".join(f"{label} {', '.join(f'{r:.0f}' for r in rates[key])}"
                    for key, label in PG_PROFILED.items()),
        "us per POST = the phase's share of its samples x its median PostgreSQL CPU per POST",
        f"{'phase':58s} {'signed':>13s} {'unsigned':>13s} {'BYPASSRLS':>13s}"
        f" {'signed-unsig':>12s} {'signed-bypass':>13s}",
    ]
    for phase in shares["app"]:
        if any(shares[key][phase] for key in keys):
            cells = "".join(f" {us[key][phase]:6.0f} {shares[key][phase]:6.1%}" for key in keys)
            lines.append(f"{phase:58s}{cells} {us['app'][phase] - us['unsigned'][phase]:+12.0f}"
                         f" {us['app'][phase] - us['bypass'][phase]:+13.0f}")
    cells = "".join(f" {cost[key]:6.0f} {'':6s}" for key in keys)
    lines.append(f"{'PostgreSQL CPU per POST (median of rounds)':58s}{cells}"
                 f" {cost['app'] - cost['unsigned']:+12.0f} {cost['app'] - cost['bypass']:+13.0f}")
    return lines


RESULTS = Table(
    Column("what", 62, left=True, gap=""), Column("per s", 8, ".0f"), Column("p50 ms", 7),
    Column("p99 ms", 7), Column("cores: api   pg  gen other", 27, gap="  "),
    Column("CPU us/op: api   pg", 19), Column("errors", 6, left=True, gap="  "),
    Column("note", left=True),
)


def report(ctx: Context, rows: list[Row], header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print()
    print(RESULTS.header())
    for label, result, note in rows:
        if result is None:
            print(RESULTS.row(label, "n/a"))
            continue
        per_op = cpu_per_op(result.cpu, result.rate) if "generator" not in label else ""
        print(RESULTS.row(label, result.rate, ms(result.percentile(50), 2),
                          ms(result.percentile(99), 2), cores(result.cpu), per_op,
                          str(result.errors) if result.errors else "", note))
        if result.errors:
            print(f"{'':62s} statuses: {result.statuses}")
    print()
    print("ratios: median over rounds of the ratio within each round (pairs run back to back)")

    ratios = Ratios(ctx.runs, 34, 18)
    for label, values, target in (
        ("API / physical baseline", ratios.rates(API_APP, PLAIN), "(target >= 0.30)"),
        ("API / raw (same tenant tx)", ratios.rates(API_APP, RAW_TENANT), "(target >= 0.20)"),
        ("API / raw (one-batch floor)", ratios.rates(API_APP, RAW_BATCH), ""),
        ("RLS cost, API: app / BYPASSRLS", ratios.rates(API_APP, API_BYPASS), "(target >= 0.95)"),
        ("signed context, API: signed / unsigned", ratios.rates(API_APP, API_UNSIGNED),
         "(target >= 0.95)"),
        ("  same by CPU/op (api+pg)", ratios.cpus(API_APP, API_UNSIGNED), "(target >= 0.95)"),
        ("RLS cost, raw: app / BYPASSRLS", ratios.rates(RAW_TENANT, RAW_BYPASS), ""),
        ("  same by CPU/op (api+pg), API", ratios.cpus(API_APP, API_BYPASS), "(target >= 0.95)"),
        ("  same by CPU/op (api+pg), raw", ratios.cpus(RAW_TENANT, RAW_BYPASS), ""),
        ("doorbell, API: on / off", ratios.rates(API_APP, API_QUIET), ""),
        ("doorbell, raw: on / off", ratios.rates(RAW_TENANT, RAW_QUIET), ""),
        *((("POST: this tree / --ab-src", ratios.rates(API_APP, API_AB), ""),
           ("  same by CPU/op (api+pg)", ratios.cpus(API_APP, API_AB), ""),
           ("GET /healthz: this tree / --ab-src", ratios.rates(HEALTHZ_APP, HEALTHZ_AB), ""),
           ("  same by CPU/op (api)", ratios.cpus(HEALTHZ_APP, HEALTHZ_AB, ("api",)), ""))
          if API_AB in ctx.runs else ()),
    ):
        for line in ratios.row(label, values, target):
            print(line)


async def run_async(ctx: Context, header: list[str]) -> None:
    rows = await measure(ctx)
    report(ctx, rows, header)
    if ctx.args.profile and SEND_PATH in ctx.paths:
        print()
        print("\n".join(await profile(ctx, Path(ctx.args.profile))))
    if ctx.args.pg_profile and SEND_PATH in ctx.paths:
        print()
        print("\n".join(await pg_profile(ctx, Path(ctx.args.pg_profile))))


def serve_options(args: argparse.Namespace) -> str:
    """The servers' command-line options, as a reader would type them ("(defaults)": none)."""
    options = [f"--workers {args.workers}"] if args.workers is not None else []
    if args.access_log is not None:
        options.append("--access-log" if args.access_log == "on" else "--no-access-log")
    return " ".join(options) or "(defaults)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of inserts")
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn workers per server (default: serve's own default)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 0.5 s per measurement (numbers not meaningful)")
    parser.add_argument("--profile", metavar="DIR",
                        help="then py-spy the vechat_app server's workers under send load")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--pg-profile", metavar="DIR",
                        help="then perf PostgreSQL under send load: signed, unsigned, BYPASSRLS")
    parser.add_argument("--access-log", choices=["on", "off"], default=None,
                        help="serve --access-log / --no-access-log (default: serve's default)")
    parser.add_argument("--keep", action="store_true",
                        help="after measuring, keep everything running until Ctrl-C (profiling)")
    parser.add_argument("--ab-src", metavar="DIR",
                        help="also measure a vechat_app server from this source tree (its src/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 0.5, 0.2, 1
    workers = args.workers if args.workers is not None else default_workers()
    access_log = None if args.access_log is None else args.access_log == "on"

    started = time.perf_counter()
    with workdir("http") as work, private_cluster(work, durable=True) as pg:
        admin_url = migrated_database(pg)
        conversations = seed(admin_url)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(PLAIN_TABLE_SQL.encode())
        urls = {
            "app": app_url(admin_url),
            "bypass": bypass_url(admin_url),
            "quiet": app_url(admin_url, **{"vechat.doorbell": "off"}),
            # The A/B of the signed context: the same data, policies trusting settings, as before.
            "unsigned": app_url(unsigned_copy(pg, admin_url)),
        }
        servers = {
            key: ApiServer(label, urls[key], args.workers, work / f"serve-{key}.log",
                           privileged=key == "bypass", access_log=access_log,
                           env={"VECHAT_CONTEXT_MODE": "settings"} if key == "unsigned" else {})
            for key, label in (("app", "vechat_app"), ("bypass", BYPASS_ROLE),
                               ("quiet", "vechat_app, doorbell off"),
                               ("unsigned", "vechat_app, unsigned context"))
        }
        if args.ab_src:
            source = str(Path(args.ab_src).resolve() / "src")
            path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
            servers["ab"] = ApiServer(f"vechat_app from {args.ab_src}", urls["app"],
                                      args.workers, work / "serve-ab.log",
                                      access_log=access_log,
                                      env={"PYTHONPATH": path})
        try:
            start_all(list(servers.values()))
            paths = available_paths(servers["app"].port)
            setup_s = time.perf_counter() - started
            header = [
                f"vechat-rls HTTP benchmark: {os.cpu_count()} CPUs, Python"
                f" {platform.python_version()}, PostgreSQL {server_version(admin_url)} (durable:"
                " fsync, synchronous_commit on)",
                f"servers: vechat-rls serve {serve_options(args)} ({workers} workers, pool"
                f" {POOL_MAX} per worker), VECHAT_RATE_LIMIT_PER_MIN={RATE_LIMIT} (the limit must"
                " not bite)",
                f"load: {CLIENTS} keep-alive clients over {ORGANISATIONS} organisations, one sender"
                f" and conversation each, in this process; {args.duration:g} s per measurement"
                f" after {args.warmup:g} s warm-up, inserts median of {args.rounds} interleaved"
                " round(s)",
                f"raw asyncpg: {CLIENTS} tasks over {workers * POOL_MAX} connections "
                f"(= the servers' pools); setup took {setup_s:.1f} s",
                "cores: CPU used meanwhile by the API servers, PostgreSQL, this generator and all"
                " else on the machine (other people's work: noise); CPU us/op: API servers' and"
                " PostgreSQL's CPU per operation (steadier than rates on a busy machine)",
                *([f"A/B: a fourth server, as vechat_app, from {args.ab_src}/src; its sends and"
                   " GET /healthz interleaved with this tree's in the same rounds"]
                  if args.ab_src else []),
                f"reproduce: {reproduce(__file__, argv)}",
            ]

            async def with_pools() -> None:
                size = workers * POOL_MAX
                pools = {key: await db.create_pool(url, min_size=size, max_size=size)
                         for key, url in urls.items()}
                pools["plain"] = await db.create_pool(admin_url, min_size=size, max_size=size)
                postmaster = pg.pid()
                assert postmaster is not None
                cpu = CpuMeter({
                    "api": lambda: [pid for s in servers.values() for pid in s.pids()],
                    "pg": lambda: [postmaster, *children(postmaster)],
                    "gen": lambda: [os.getpid()],
                })
                ctx = Context(args, bench_clients(conversations), conversations, servers, pools,
                              paths, cpu, postmaster)
                try:
                    await run_async(ctx, header)
                    if args.keep:
                        print("\nkept running: " + ", ".join(
                            f"{s.label} on :{s.port} pids {s.pids()}" for s in servers.values()))
                        print(f"database: {admin_url}\nstop with Ctrl-C or SIGTERM", flush=True)
                        stop = asyncio.Event()
                        for signum in (signal.SIGINT, signal.SIGTERM):
                            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
                        await stop.wait()
                finally:
                    for pool in pools.values():
                        await pool.close()

            with contextlib.suppress(KeyboardInterrupt):
                event_loop_runner()(with_pools())
        finally:
            for server in servers.values():
                server.stop()
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
