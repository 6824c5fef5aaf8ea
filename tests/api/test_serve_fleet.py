"""`vechat-rls serve --workers 2` over a registry: three databases on two PostgreSQL servers.

Organisation A has a database of its own on a second server (which the test stops and starts
again), B one on the session's server, and C and D share a third there. One serve process with
two workers serves them all: each request and each WebSocket goes to its organisation's
database, isolation holds across all of them, realtime delivery works in each, an organisation
the registry does not place is refused like a bad token, and A's server going down leaves B, C
and D served while A answers 503 until it is back.

Realtime is checked in every database: delivery of a message sent over HTTP, presence, typing,
and (in the shared one) resuming with `since`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from tests.support.api import SECRET, Caller, wait_ready
from tests.support.chat import Org, seed_directory
from tests.support.fixtures import APP_PASSWORD, migrate_to_head
from tests.support.fleet import migrated_databases, write_registry
from tests.support.postgres import TestPostgres
from tests.support.realtime import Client
from tests.support.seed import new_organisation_ids
from vechat_rls.auth import mint_token
from vechat_rls.pgserver import PgServer, free_port, temporary_server

pytestmark = pytest.mark.slow

API = "/api/v1"
WORDS = {"A": "zebra", "B": "quokka", "C": "lynx", "D": "okapi"}  # in each one's messages only


@dataclass
class Tenant:
    """One organisation of the test: its cast, its database, and what it created."""

    org: Org
    database: str
    admin_url: str
    conversation_id: int = 0
    message_ids: tuple[int, ...] = ()


class Serve:
    """`vechat-rls serve --workers 2` on a registry, its log in a file."""

    def __init__(self, registry: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if k != "VECHAT_DATABASE_URL"}
        environment.update(
            VECHAT_REGISTRY=str(registry),
            VECHAT_JWT_SECRET=SECRET,
            VECHAT_POOL_MIN="0",
            VECHAT_POOL_MAX="4",
            VECHAT_RATE_LIMIT_PER_MIN="100000",
        )
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as serve
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vechat_rls.cli", "serve", "--port", str(self.port),
             "--workers", "2"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.base, self.proc, self.output, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ws_url(self, caller: Caller) -> str:
        token = mint_token(
            key=SECRET,
            organisation_id=caller.organisation_id,
            user_id=caller.user_id,
            user_type=caller.user_type,
        )
        return f"ws://127.0.0.1:{self.port}{API}/ws?access_token={token}"


@pytest.fixture
def second_server() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own, to stop and start; not under pytest's tmp_path
    (see test_realtime_faults.private_postgres)."""
    with temporary_server(Path(tempfile.mkdtemp(prefix="vechat-test-pg-"))) as server:
        yield server


@dataclass
class World:
    serve: Serve
    server: PgServer  # the one holding A's database
    tenants: dict[str, Tenant]
    unknown: Org


@pytest.fixture
def world(postgres: TestPostgres, second_server: PgServer, tmp_path: Path) -> Iterator[World]:
    with psycopg.connect(second_server.admin_url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fleet_a")
    migrate_to_head(second_server.admin_url("fleet_a"))
    b, shared = migrated_databases(postgres, 2)
    a_ids = new_organisation_ids(5)
    tenants = {
        "A": Tenant(Org(a_ids[0]), "fleet_a", second_server.admin_url("fleet_a")),
        "B": Tenant(Org(a_ids[1]), b.name, b.admin_url),
        "C": Tenant(Org(a_ids[2]), shared.name, shared.admin_url),
        "D": Tenant(Org(a_ids[3]), shared.name, shared.admin_url),
    }
    # Ids are per database: start each database's at its own place, so that an id of another
    # organisation's object is never also one of the caller's own (it must answer 404).
    for offset, admin_url in ((1_000, b.admin_url), (2_000, shared.admin_url)):
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for table in ("vechat_conversations", "vechat_messages"):
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), {offset})"
                )
    for tenant in tenants.values():
        seed_directory(tenant.admin_url, tenant.org)
    registry = write_registry(
        tmp_path / "registry.toml",
        [
            ("a", second_server.url("vechat_app", APP_PASSWORD, "fleet_a"), [tenants["A"].org.id]),
            ("b", b.app_url, [tenants["B"].org.id]),
            ("shared", shared.app_url, [tenants["C"].org.id, tenants["D"].org.id]),
        ],
    )
    serve = Serve(registry)
    try:
        serve.wait_ready()
        yield World(serve, second_server, tenants, Org(a_ids[4]))
    finally:
        serve.stop()
        print(f"--- serve ---\n{serve.output()}")  # shown when the test failed
        for database in (b, shared):
            postgres.drop_database(database.name)


@contextlib.asynccontextmanager
async def socket_of(serve: Serve, caller: Caller) -> AsyncIterator[Client]:
    async with connect(serve.ws_url(caller), open_timeout=10) as ws:
        client = Client(ws)
        try:
            await client.ready()
            yield client
        finally:
            await client.close()


async def send(http: httpx.AsyncClient, tenant: Tenant, text: str) -> httpx.Response:
    return await http.post(
        f"{API}/conversations/{tenant.conversation_id}/messages",
        json={"body": text, "client_id": f"{text}-{time.monotonic_ns()}"},
        headers=tenant.org.staff.headers,
    )


def is_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_one_serve_process_routes_isolates_and_survives_a_database_going_down(
    world: World,
) -> None:
    serve, tenants = world.serve, world.tenants
    assert "WARNING" not in serve.output()
    async with httpx.AsyncClient(base_url=serve.base, timeout=10) as http:
        # Every organisation works in its own database.
        for name, tenant in tenants.items():
            opened = await http.post(
                f"{API}/conversations",
                json={"peer": tenant.org.client.participant},
                headers=tenant.org.staff.headers,
            )
            assert opened.status_code == 201, opened.text
            tenant.conversation_id = opened.json()["id"]
            sent = [await send(http, tenant, f"{WORDS[name]} {n}") for n in ("one", "two")]
            assert all(r.status_code == 201 for r in sent), [r.text for r in sent]
            tenant.message_ids = tuple(r.json()["id"] for r in sent)
        for tenant in tenants.values():
            with psycopg.connect(tenant.admin_url) as conn:
                stored = conn.execute(
                    "SELECT count(*) FROM vechat_messages WHERE organisation_id = %s",
                    (tenant.org.id,),
                ).fetchone()
            assert stored == (2,), (tenant.database, stored)

        # Isolation across all of them: each sees its own, another's ids are 404.
        for name, tenant in tenants.items():
            for caller in (tenant.org.staff, tenant.org.client):
                listed = (await http.get(f"{API}/conversations", headers=caller.headers)).json()
                assert [c["id"] for c in listed["items"]] == [tenant.conversation_id], name
                page = await http.get(
                    f"{API}/conversations/{tenant.conversation_id}/messages",
                    headers=caller.headers,
                )
                assert [m["id"] for m in page.json()["items"]] == list(tenant.message_ids)
                found = await http.get(
                    f"{API}/messages/search", params={"q": WORDS[name]}, headers=caller.headers
                )
                assert len(found.json()["items"]) == 2, found.text
            for other_name, other in tenants.items():
                if other_name == name:
                    continue
                for path in (
                    f"/conversations/{other.conversation_id}",
                    f"/conversations/{other.conversation_id}/messages",
                    f"/messages/{other.message_ids[0]}/edits",
                ):
                    response = await http.get(API + path, headers=tenant.org.staff.headers)
                    is_problem(response, 404)
                searched = await http.get(
                    f"{API}/messages/search",
                    params={"q": WORDS[other_name]},
                    headers=tenant.org.staff.headers,
                )
                assert searched.status_code == 200 and searched.json()["items"] == []

        # Realtime in each database: a message sent over HTTP reaches the peer's socket.
        async with contextlib.AsyncExitStack() as stack:
            receivers = {
                name: await stack.enter_async_context(socket_of(serve, tenant.org.client))
                for name, tenant in tenants.items()
            }
            for name, tenant in tenants.items():
                response = await send(http, tenant, f"live {name}")
                assert response.status_code == 201
                frame = await receivers[name].frame(
                    "message.created", timeout=15, id=response.json()["id"]
                )
                assert frame["data"]["body"] == f"live {name}"
            for name, receiver in receivers.items():
                created = [f for f in receiver.events() if f["type"] == "message.created"]
                assert [f["data"]["body"] for f in created] == [f"live {name}"], "own only"

            # Presence and typing ride on their database's NOTIFY too: the staff's socket comes
            # online for its client, and its typing reaches the client.
            for name, tenant in tenants.items():
                staff = tenant.org.staff
                async with socket_of(serve, staff) as typist:
                    await receivers[name].frame(
                        "presence", timeout=15, user_id=staff.user_id, status="online"
                    )
                    await typist.send(
                        {"type": "typing", "conversation_id": tenant.conversation_id,
                         "is_typing": True}
                    )
                    typing = await receivers[name].frame("typing", timeout=15, is_typing=True)
                    assert typing["data"]["conversation_id"] == tenant.conversation_id

            # Resume with since, in the shared database: exactly what was missed, replayed.
            live = next(
                f for f in receivers["C"].events() if f["data"].get("body") == "live C"
            )
            resume_url = serve.ws_url(tenants["C"].org.client) + f"&since={live['seq'] - 1}"
            async with connect(resume_url, open_timeout=10) as ws:
                resumed = Client(ws)
                await resumed.ready()
                assert resumed.events()[0]["seq"] == live["seq"]
                assert resumed.events()[0]["data"]["id"] == live["data"]["id"]
                assert resumed.seqs() == receivers["C"].seqs()[-len(resumed.seqs()):]
                await resumed.close()

            # An organisation the registry does not place: 401 problem, and 4401 on a socket.
            refused = await http.get(f"{API}/me", headers=world.unknown.staff.headers)
            is_problem(refused, 401)
            assert refused.json()["detail"] == (
                f"organisation {world.unknown.id} is not served here"
            )
            assert refused.headers["www-authenticate"].startswith("Bearer")
            async with connect(serve.ws_url(world.unknown.staff), open_timeout=10) as ws:
                refused_socket = Client(ws)
                assert await refused_socket.closed() == 4401

            # A's server goes down: A answers 503, B, C and D keep being served, live too.
            await asyncio.to_thread(world.server.stop)
            a, others = tenants["A"], [tenants[n] for n in "BCD"]
            deadline = time.monotonic() + 20
            while True:
                response = await send(http, a, "while down")
                if response.status_code == 503:
                    break
                assert response.status_code == 201, response.text  # never a 500
                assert time.monotonic() < deadline, "A still served with its server down"
                await asyncio.sleep(0.2)
            assert int(response.headers["retry-after"]) >= 1
            is_problem(await http.get(f"{API}/conversations", headers=a.org.staff.headers), 503)
            for tenant in others:
                listed = await http.get(f"{API}/conversations", headers=tenant.org.staff.headers)
                assert listed.status_code == 200
                during = await send(http, tenant, "during the outage")
                assert during.status_code == 201, during.text
                name = next(n for n, t in tenants.items() if t is tenant)
                await receivers[name].frame("message.created", timeout=15, id=during.json()["id"])
            readiness = [(await http.get("/readyz")).json() for _ in range(6)]
            assert all(r["status"] in ("ok", "degraded") for r in readiness), readiness
            assert any(r["checks"].get("database:a") == "unavailable" for r in readiness)
            assert all(r["checks"].get("database:b") in ("ok", "idle") for r in readiness)

            # A's server is back: A is served again, and its open socket gets what is sent.
            await asyncio.to_thread(world.server.start)
            deadline = time.monotonic() + 30
            while (response := await send(http, a, "back")).status_code != 201:
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, "A did not recover"
                await asyncio.sleep(0.3)
            await receivers["A"].frame("message.created", timeout=30, id=response.json()["id"])

    log = serve.output()
    assert f"refused organisation {world.unknown.id}" in log
    assert "eyJ" not in log, "tokens are never logged"
    assert "Traceback" not in log
