"""Messages per second through the HTTP API, against the same inserts straight through asyncpg.

Starts its own durable PostgreSQL (fsync and synchronous_commit on, like production), migrates
it, seeds 10 organisations (personnel, clients, contacts, conversations, message history) and
starts `vechat-rls serve` three times: as `vechat_app` (the real thing), as a role with
BYPASSRLS (the cost of the policies) and as `vechat_app` with the NOTIFY doorbell switched off
(the cost of the doorbell, which architecture.md asks every benchmark to report). Then, on this
machine, with the load generator in this process:

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

`--workers 2` (the default) is one uvicorn worker per core: the API spends ~1 ms of CPU per send
and ~0.6-1 ms per GET (the "CPU us/op" column), so one process caps GETs at about one core while
the other idles; a third worker would only add context switches with PostgreSQL, which needs
~1-1.5 ms of CPU per message on the same two cores. `--profile DIR` then samples the
`vechat_app` server's workers with py-spy (`pip install py-spy`) under send load and prints
where their time goes.

    .venv/bin/python bench/http_api.py [--duration 5] [--rounds 3] [--workers 2] [--quick]
                                       [--profile DIR [--native]] [--no-access-log] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from vechat_rls import db, migrate
from vechat_rls.auth import Identity, mint_token
from vechat_rls.pgserver import PgServer, embedded_bindir, free_port

DATABASE = "vechat_bench"
APP_PASSWORD = "bench-app"
BYPASS_ROLE = "vechat_bench_bypass"
BYPASS_PASSWORD = "bench-bypass"
JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"
ORGANISATIONS = 10
CLIENTS = 32
PERSONNEL_PER_ORG = 4  # ceil(CLIENTS / ORGANISATIONS): each bench client is its own sender
CLIENTS_PER_ORG = 20  # customers: every personnel has a conversation with each (the list GET)
HISTORY = 60  # messages already in each bench conversation (a full first page)
RATE_LIMIT = 1_000_000_000
POOL_MAX = 10  # per server process, the Settings default

# ---------------------------------------------------------------------------------------------
# Setup: server, schema, roles, seed


def _server_version(admin_url: str) -> str:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


BYPASS_ROLE_SQL = f"""
DO $$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BYPASS_ROLE}') THEN
        CREATE ROLE {BYPASS_ROLE} LOGIN BYPASSRLS;
    END IF;
END$$;
ALTER ROLE {BYPASS_ROLE} LOGIN BYPASSRLS PASSWORD '{BYPASS_PASSWORD}';
-- vechat_app's privileges, nothing more: the only difference is that policies are skipped.
GRANT vechat_app TO {BYPASS_ROLE};
ALTER ROLE vechat_app LOGIN PASSWORD '{APP_PASSWORD}';
"""


def bench_database(pg: PgServer) -> str:
    """Create and migrate the benchmark database on `pg`, add the BYPASSRLS role (which also sets
    vechat_app's password); returns the superuser URL of that database."""
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}".encode())
    admin_url = pg.admin_url(DATABASE)
    migrate.migrate(migrate.Target(DATABASE, admin_url), migrate.load_layout(),
                    say=lambda _line: None)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(BYPASS_ROLE_SQL.encode())
    return admin_url

INSERT_CONTACT = """
INSERT INTO public.vechat_contacts
    (organisation_id, user_id, user_type, display_name, email, role, assigned_personnel)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
SET_CONTEXT = """
SELECT set_config('vechat.organisation_id', %s, true), set_config('vechat.user_id', %s, true),
       set_config('vechat.user_type', %s, true)
"""
# Pairs are stored normalised: lower id first; equal ids, 'client' < 'personnel'.
CREATE_CONVERSATION = """
INSERT INTO public.vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type)
VALUES (%s, %s, %s, %s, %s)
RETURNING id
"""
SEED_MESSAGE = """
INSERT INTO public.vechat_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type, message)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


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
        token = mint_token(
            organisation_id=org, user_id=user, user_type="personnel", key=JWT_SECRET,
            name=f"Personnel {user}", ttl_s=24 * 3600,
        )
        clients.append(BenchClient(index, org, user, user, conversations[(org, user, user)], token))
    return clients


def seed(admin_url: str) -> dict[tuple[int, int, int], int]:
    """Contacts, every personnel x client conversation, history; → {(org, personnel, client): id}.

    Written as the application writes (under the sender's context), so the triggers keep the
    counters, last messages and event log as in production.
    """
    conversations: dict[tuple[int, int, int], int] = {}
    with psycopg.connect(admin_url) as conn:
        for org in range(1, ORGANISATIONS + 1):
            with conn.transaction():
                contacts = [
                    (org, p, "personnel", f"Personnel {p}", f"p{p}@org{org}.example", "commercial",
                     [])
                    for p in range(1, PERSONNEL_PER_ORG + 1)
                ] + [
                    (org, c, "client", f"Client {c}", f"c{c}@org{org}.example", None, [])
                    for c in range(1, CLIENTS_PER_ORG + 1)
                ]
                with conn.cursor() as cur:
                    cur.executemany(INSERT_CONTACT, contacts)
                for p in range(1, PERSONNEL_PER_ORG + 1):
                    conn.execute(SET_CONTEXT, (str(org), str(p), "personnel"))
                    for c in range(1, CLIENTS_PER_ORG + 1):
                        # (c, 'client') < (p, 'personnel') iff c <= p
                        pair = ((c, "client", p, "personnel") if c <= p
                                else (p, "personnel", c, "client"))
                        row = conn.execute(CREATE_CONVERSATION, (org, *pair)).fetchone()
                        assert row is not None
                        conversations[(org, p, c)] = row[0]
                    history = [
                        (org, conversations[(org, p, c)], p, "personnel", c, "client",
                         f"seed message {n} from personnel {p} to client {c}")
                        for c in range(1, CLIENTS_PER_ORG + 1)
                        for n in range(HISTORY if c == p else 2)
                    ]
                    with conn.cursor() as cur:
                        cur.executemany(SEED_MESSAGE, history)
        conn.execute("ANALYZE")
        conn.commit()
    return conversations


def url_for(server: PgServer, user: str, password: str, **settings: str) -> str:
    # asyncpg passes unknown query parameters as session settings (server_settings)
    query = "&".join(f"{k}={v}" for k, v in settings.items())
    return server.url(user, password, DATABASE) + (f"?{query}" if query else "")


# ---------------------------------------------------------------------------------------------
# API server processes


def vechat_rls_command() -> list[str]:
    script = Path(sys.executable).with_name("vechat-rls")
    if script.exists():
        return [str(script)]
    found = shutil.which("vechat-rls")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from vechat_rls.cli import main; sys.exit(main())"]


@dataclass
class ApiServer:
    """One `vechat-rls serve` (with its workers), started and stopped by this script only."""

    label: str
    database_url: str
    workers: int
    log_path: Path
    privileged: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    access_log: bool = True
    env: dict[str, str] = field(default_factory=dict)  # more VECHAT_* settings (bench/realtime.py)

    @property
    def argv(self) -> list[str]:
        if not self.access_log:
            # `vechat-rls serve` exactly, with uvicorn told not to log each request.
            patch = ("import functools, sys, uvicorn; "
                     "uvicorn.run = functools.partial(uvicorn.run, access_log=False); "
                     "from vechat_rls.cli import main; sys.exit(main(sys.argv[1:]))")
            argv = [sys.executable, "-c", patch, "serve", "--host", "127.0.0.1", "--port",
                    str(self.port), "--workers", str(self.workers)]
            return argv + (["--allow-privileged-role"] if self.privileged else [])
        argv = [*vechat_rls_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]
        return argv + (["--allow-privileged-role"] if self.privileged else [])

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "VECHAT_DATABASE_URL": self.database_url,
            "VECHAT_JWT_SECRET": JWT_SECRET,
            "VECHAT_RATE_LIMIT_PER_MIN": str(RATE_LIMIT),
            "VECHAT_POOL_MAX": str(POOL_MAX),
            **self.env,
        }
        with self.log_path.open("wb") as log:
            # Its own session: uvicorn's supervisor and workers are ours to stop as one group.
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/readyz", timeout=2
            ) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The supervisor and its worker processes."""
        assert self.proc is not None
        return [self.proc.pid, *children(self.proc.pid)]

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script created
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
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


def http_post_json(path: str, token: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_cpu() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


class CpuMeter:
    """Where the machine's CPU goes during a measurement: API servers, PostgreSQL, generator."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups

    def snapshot(self) -> dict[str, dict[int, float]]:
        taken = {name: {pid: process_cpu(pid) for pid in pids()}
                 for name, pids in self.groups.items()}
        taken["machine"] = {0: machine_busy_cpu()}
        return taken

    @staticmethod
    def cores(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]],
              seconds: float) -> dict[str, float]:
        used = {
            name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            / seconds
            for name in after
        }
        # Everything else on the machine: other people's tests are the usual noise.
        used["other"] = max(0.0, used.pop("machine") - sum(used.values()))
        return used


@dataclass
class Result:
    rate: float  # completed operations per second
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy, per process group

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def closed_loop(
    port: int, make: RequestMaker, clients: int, duration: float, warmup: float
) -> Result:
    """`clients` keep-alive connections, each sending its next request as soon as one returns."""
    conns = [await Connection.open(port) for _ in range(clients)]
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + duration
    result = Result(rate=0.0)
    done = 0

    async def client(index: int, conn: Connection) -> None:
        nonlocal done
        number = 0
        while (now := time.perf_counter()) < stop:
            status = await conn.request(make(index, number))
            number += 1
            end = time.perf_counter()
            if now >= measure_from:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status >= 400:
                    result.errors += 1
                else:
                    done += 1
                    result.latencies.append(end - now)

    try:
        await asyncio.gather(*(client(i, c) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            conn.close()
    result.rate = done / (time.perf_counter() - measure_from)
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
    done = 0

    async def one(scheduled: float) -> None:
        nonlocal done
        index, conn = await idle.get()
        try:
            status = await conn.request(make(index, counters[index]))
            counters[index] += 1
        finally:
            idle.put_nowait((index, conn))
        if scheduled >= measure_from:
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 400:
                result.errors += 1
            else:
                done += 1
                result.latencies.append(time.perf_counter() - scheduled)

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
    result.rate = done / duration
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
# The physical baseline: asyncpg straight into vechat_messages

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
    begin = {c.index: db.begin_sql(c.identity, readonly=False, statement_timeout_ms=5000)
             for c in clients}
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + duration
    done = 0

    async def task(c: BenchClient) -> None:
        nonlocal done
        number = 0
        while (now := time.perf_counter()) < stop:
            args = (c.organisation_id, c.conversation_id, c.user_id, c.peer_id,
                    f"bench message {number}", f"{tag}-{c.index}-{number}")
            if batch:
                # Literals only: integers and text of our own making.
                await pool.execute(
                    f"{begin[c.index]}; INSERT INTO public.vechat_messages (organisation_id,"
                    " conversation_id, sender_id, sender_type, receiver_id, receiver_type,"
                    f" message, client_id) VALUES ({args[0]}, {args[1]}, {args[2]}, 'personnel',"
                    f" {args[3]}, 'client', '{args[4]}', '{args[5]}'); COMMIT"
                )
            else:
                async with db.tenant(pool, c.identity, statement_timeout_ms=5000) as conn:
                    await conn.fetchrow(RAW_INSERT, *args)
            number += 1
            if now >= measure_from:
                done += 1

    await asyncio.gather(*(task(c) for c in clients))
    return Result(rate=done / (time.perf_counter() - measure_from))


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
    runs: dict[str, list[Result]] = field(default_factory=dict)  # every round of the inserts
    run_tag: str = field(default_factory=lambda: f"r{int(time.time())}")


RAW_TENANT = "raw asyncpg INSERT in db.tenant() as vechat_app (3 RT)"
RAW_BATCH = "raw asyncpg INSERT, whole tenant tx in one batch (1 RT)"
RAW_BYPASS = "raw asyncpg INSERT in db.tenant() as BYPASSRLS role"
RAW_QUIET = "raw asyncpg INSERT in db.tenant(), doorbell off"
API_APP = "POST messages as vechat_app"
API_BYPASS = "POST messages as BYPASSRLS role"
API_QUIET = "POST messages as vechat_app, doorbell off"

ORDER = [API_QUIET, API_APP, API_BYPASS, RAW_BYPASS, RAW_TENANT, RAW_QUIET, RAW_BATCH]

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


def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:7.2f}"


Row = tuple[str, Result | None, str]


async def metered(ctx: Context, run: Awaitable[Result]) -> Result:
    """`run`, with the CPU each process group burnt meanwhile (in cores) attached."""
    before, started = ctx.cpu.snapshot(), time.perf_counter()
    result = await run
    result.cpu = CpuMeter.cores(before, ctx.cpu.snapshot(), time.perf_counter() - started)
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
        for key, label in (("app", API_APP), ("bypass", API_BYPASS), ("quiet", API_QUIET)):
            port = ctx.servers[key].port
            variants.append((label, lambda tag, port=port: closed_loop(  # type: ignore[misc]
                port, send_maker(ctx, tag), CLIENTS, args.duration, warmup)))
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

    def median(label: str) -> Result:
        results = sorted(runs[label], key=lambda r: r.rate)
        return results[len(results) // 2]

    for label, _ in variants:
        spread = ", ".join(f"{r.rate:.0f}" for r in runs[label])
        rows.append((label, median(label), f"rounds: {spread}" if args.rounds > 1 else ""))

    if sends:
        sustained = median(API_APP).rate
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


# Where a sample's time goes: the innermost frame whose file matches, in this order.
PROFILE_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("system calls (socket read/write, libc)", ("libc.so",)),
    ("JSON (msgspec encode/decode)", ("msgspec",)),
    ("JWT verification (pyjwt, cryptography)", ("jwt/", "cryptography")),
    ("asyncpg (protocol, codecs, pool)", ("asyncpg",)),
    ("Prometheus middleware", ("prometheus",)),
    ("Litestar DTO / body decoding", ("litestar/dto", "vechat_rls/api/body.py")),
    ("Litestar DI / kwargs / params", ("litestar/_kwargs", "litestar/di", "_signature")),
    ("Litestar responses / serialization", ("litestar/response", "litestar/serialization")),
    ("Litestar routing / middleware / app", ("litestar/",)),
    ("uvicorn + httptools (HTTP parsing)", ("uvicorn", "httptools")),
    ("vechat_rls code", ("vechat_rls",)),
    ("event loop (uvloop, libuv, asyncio tasks)",
     ("uvloop", "loop.c", "stream.c", "core.c", "linux.c", "asyncio", "selectors", "socket",
      "Runner.run")),
    ("logging", ("logging/",)),
]


def summarise_profile(paths: Sequence[Path], top: int = 15) -> list[str]:
    """py-spy raw (collapsed) stacks → share of samples per category and hottest functions."""
    categories: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            # The event loop's thread only, and not while it waits in epoll (native stacks
            # include idle threads and waits).
            if not any("Runner.run" in f for f in frames) or "epoll" in frames[-1]:
                continue
            total += count
            leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
            category = "other (interpreter, C without symbols)"
            for frame in reversed(frames):
                found = next((name for name, needles in PROFILE_CATEGORIES
                              if any(n in frame for n in needles)), None)
                if found:
                    category = found
                    break
            categories[category] = categories.get(category, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"{count / total:6.1%}  {name}"
             for name, count in sorted(categories.items(), key=lambda kv: -kv[1])]
    lines.append(f"hottest functions (self time, {total} samples):")
    lines += [f"{count / total:6.1%}  {name[:110]}"
              for name, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
    return lines


async def profile(ctx: Context, directory: Path) -> list[str]:
    """py-spy on every worker of the vechat_app server during one more send run."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return ["py-spy not found (pip install py-spy): no profile"]
    directory.mkdir(parents=True, exist_ok=True)
    server = ctx.servers["app"]
    workers = [pid for pid in children(server.pids()[0])
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    seconds = max(1, round(ctx.args.duration + ctx.args.warmup))
    outputs = [directory / f"worker-{pid}.txt" for pid in workers]
    log = (directory / "py-spy.log").open("ab")
    spies = [
        subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(seconds),
                          "--rate", "200", "--format", "raw", "--output", str(out),
                          # --native must stop the process to unwind C stacks
                          *(["--native"] if ctx.args.native else ["--nonblocking"])],
                         stdout=log, stderr=subprocess.STDOUT)
        for pid, out in zip(workers, outputs, strict=True)
    ]
    await asyncio.sleep(0.5)
    result = await metered(ctx, closed_loop(server.port, send_maker(ctx, f"{ctx.run_tag}-prof"),
                                            CLIENTS, ctx.args.duration, ctx.args.warmup))
    for spy in spies:
        await asyncio.to_thread(spy.wait)
    log.close()
    header = [f"profile of {len(workers)} worker(s) under POST load ({result.rate:.0f}/s while "
              f"sampled; cores api {result.cpu['api']:.2f} pg {result.cpu['pg']:.2f} gen "
              f"{result.cpu['gen']:.2f}); stacks in {directory}"]
    found = [o for o in outputs if o.exists()]
    if not found:
        return [*header, f"py-spy wrote nothing; see {directory / 'py-spy.log'}"]
    return header + summarise_profile(found)


def report(ctx: Context, rows: list[Row], header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print()
    print(f"{'what':62s} {'per s':>8s} {'p50 ms':>7s} {'p99 ms':>7s}  "
          f"{'cores: api   pg  gen other':27s} {'CPU us/op: api   pg':>19s}  errors  note")
    for label, result, note in rows:
        if result is None:
            print(f"{label:62s} {'n/a':>8s}")
            continue
        errors = str(result.errors) if result.errors else ""
        cpu = (" ".join(f"{result.cpu[g]:4.2f}" for g in ("api", "pg", "gen", "other"))
               if result.cpu else "")
        per_op = (f"{result.cpu['api'] / result.rate * 1e6:6.0f} "
                  f"{result.cpu['pg'] / result.rate * 1e6:5.0f}"
                  if result.cpu and result.rate and "generator" not in label else "")
        print(f"{label:62s} {result.rate:8.0f} {ms(result.percentile(50)):>7s} "
              f"{ms(result.percentile(99)):>7s}  {cpu:>27s} {per_op:>19s}  {errors:6s} {note}")
        if result.errors:
            print(f"{'':62s} statuses: {result.statuses}")
    print()
    print("ratios: median over rounds of the ratio within each round (pairs run back to back)")

    def ratio(label: str, top: str, bottom: str, target: str = "") -> None:
        if top in ctx.runs and bottom in ctx.runs:
            each = [a.rate / b.rate for a, b in zip(ctx.runs[top], ctx.runs[bottom], strict=True)]
            spread = ", ".join(f"{r:.2f}" for r in each) if len(each) > 1 else ""
            print(f"{label:34s} {statistics.median(each):5.2f}  {target:18s} {spread}")

    def cpu_ratio(label: str, top: str, bottom: str, target: str = "") -> None:
        """bottom's CPU per operation / top's: the rate ratio if both were CPU-bound."""
        if top in ctx.runs and bottom in ctx.runs:
            def per_op(r: Result) -> float:
                return (r.cpu["api"] + r.cpu["pg"]) / r.rate
            each = [per_op(b) / per_op(a)
                    for a, b in zip(ctx.runs[top], ctx.runs[bottom], strict=True)]
            spread = ", ".join(f"{r:.2f}" for r in each) if len(each) > 1 else ""
            print(f"{label:34s} {statistics.median(each):5.2f}  {target:18s} {spread}")

    ratio("API / raw (same tenant tx)", API_APP, RAW_TENANT, "(target >= 0.20)")
    ratio("API / raw (one-batch floor)", API_APP, RAW_BATCH)
    ratio("RLS cost, API: app / BYPASSRLS", API_APP, API_BYPASS, "(target >= 0.95)")
    ratio("RLS cost, raw: app / BYPASSRLS", RAW_TENANT, RAW_BYPASS)
    cpu_ratio("  same by CPU/op (api+pg), API", API_APP, API_BYPASS, "(target >= 0.95)")
    cpu_ratio("  same by CPU/op (api+pg), raw", RAW_TENANT, RAW_BYPASS)
    ratio("doorbell, API: on / off", API_APP, API_QUIET)
    ratio("doorbell, raw: on / off", RAW_TENANT, RAW_QUIET)


async def run_async(ctx: Context, header: list[str]) -> None:
    rows = await measure(ctx)
    report(ctx, rows, header)
    if ctx.args.profile and SEND_PATH in ctx.paths:
        print()
        print("\n".join(await profile(ctx, Path(ctx.args.profile))))


def event_loop_runner() -> Callable[[Awaitable[None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run  # type: ignore[return-value]
    return uvloop.run  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of inserts")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 0.5 s per measurement (numbers not meaningful)")
    parser.add_argument("--profile", metavar="DIR",
                        help="then py-spy the vechat_app server's workers under send load")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="experiment: serve without uvicorn's per-request access log")
    parser.add_argument("--keep", action="store_true",
                        help="after measuring, keep everything running until Ctrl-C (profiling)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 0.5, 0.2, 1
    command = "  ".join([".venv/bin/python bench/http_api.py",
                         *(sys.argv[1:] if argv is None else argv)])

    workdir = Path(tempfile.mkdtemp(prefix="vechat-bench-http-"))
    started = time.perf_counter()
    pg = PgServer(datadir=workdir / "postgres", bindir=embedded_bindir(), fast=False)
    servers: dict[str, ApiServer] = {}
    try:
        pg.start()
        admin = pg.admin_url()
        admin_url = bench_database(pg)
        conversations = seed(admin_url)
        urls = {
            "app": url_for(pg, "vechat_app", APP_PASSWORD),
            "bypass": url_for(pg, BYPASS_ROLE, BYPASS_PASSWORD),
            "quiet": url_for(pg, "vechat_app", APP_PASSWORD, **{"vechat.doorbell": "off"}),
        }
        for key, label in (("app", "vechat_app"), ("bypass", BYPASS_ROLE),
                           ("quiet", "vechat_app, doorbell off")):
            servers[key] = ApiServer(label, urls[key], args.workers, workdir / f"serve-{key}.log",
                                     privileged=key == "bypass", access_log=not args.no_access_log)
            servers[key].start()
        for server in servers.values():
            server.wait_ready()
        paths = available_paths(servers["app"].port)
        setup_s = time.perf_counter() - started
        header = [
            f"vechat-rls HTTP benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()},"
            f" PostgreSQL {_server_version(admin)} (durable: fsync, synchronous_commit on)",
            f"servers: vechat-rls serve --workers {args.workers} (pool {POOL_MAX} per worker), "
            f"VECHAT_RATE_LIMIT_PER_MIN={RATE_LIMIT} (the limit must not bite), access log "
            f"{'OFF (experiment)' if args.no_access_log else 'on (as shipped)'}",
            f"load: {CLIENTS} keep-alive clients over {ORGANISATIONS} organisations, one sender and"
            f" conversation each, in this process; {args.duration:g} s per measurement after "
            f"{args.warmup:g} s warm-up, inserts median of {args.rounds} interleaved round(s)",
            f"raw asyncpg: {CLIENTS} tasks over {args.workers * POOL_MAX} connections "
            f"(= the servers' pools); setup took {setup_s:.1f} s",
            "cores: CPU used meanwhile by the API servers, PostgreSQL, this generator and all"
            " else on the machine (other people's work: noise); CPU us/op: API servers' and"
            " PostgreSQL's CPU per operation (steadier than rates on a busy machine)",
            f"reproduce: {command}",
        ]

        async def with_pools() -> None:
            size = args.workers * POOL_MAX
            pools = {key: await db.create_pool(url, min_size=size, max_size=size)
                     for key, url in urls.items()}
            postmaster = pg.pid()
            assert postmaster is not None
            cpu = CpuMeter({
                "api": lambda: [pid for s in servers.values() for pid in s.pids()],
                "pg": lambda: [postmaster, *children(postmaster)],
                "gen": lambda: [os.getpid()],
            })
            ctx = Context(args, bench_clients(conversations), conversations, servers, pools,
                          paths, cpu)
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
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        pg.stop("fast")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
