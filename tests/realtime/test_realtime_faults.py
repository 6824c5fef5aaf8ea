"""Realtime under faults: PostgreSQL restarting mid-burst, a server killed -9, a stalled client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import Caller
from tests.support.chat import Org, seed_directory
from tests.support.fixtures import APP_PASSWORD, Database, migrate_to_head
from tests.support.realtime import API, Server, running, ws_client
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls.config import ConfigError, Settings
from vechat_rls.pgserver import PgServer, temporary_server

pytestmark = pytest.mark.slow


async def open_conversation(base: str, caller: Caller, peer: Caller) -> int:
    async with httpx.AsyncClient(base_url=base + API, timeout=10) as http:
        response = await http.post(
            "/conversations", json={"peer": peer.participant}, headers=caller.headers
        )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


class Resuming:
    """A client that reconnects with `since` whenever its socket closes, recording every event."""

    def __init__(self, server: Server, caller: Caller) -> None:
        self.server = server
        self.caller = caller
        self.since: int | None = None
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.resets = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with ws_client(self.server, self.caller, since=self.since) as client:
                    self.connections += 1
                    seen = 0
                    while client.closed_code is None or seen < len(client.frames):
                        await client.wait_for(
                            lambda fs, n=seen: len(fs) > n or client.closed_code is not None,
                            timeout=3600,
                        )
                        for frame in client.frames[seen:]:
                            if frame["type"] == "reset":
                                self.resets += 1
                            if frame["type"] == "ready" and self.since is None:
                                self.since = frame["data"]["seq"]
                            if "seq" in frame:
                                self.events.append(frame)
                                self.since = frame["seq"]
                        seen = len(client.frames)
            except (OSError, ConnectionClosed, TimeoutError):
                pass
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def private_postgres() -> Iterator[PgServer]:
    """A server of this test's own: it is restarted, which the session's server must not be.

    Not under pytest's tmp_path: another pytest session starting resets that tree to 0700, which
    would lock out the server's own (unprivileged) user.
    """
    with temporary_server(Path(tempfile.mkdtemp(prefix="vechat-test-pg-"))) as server:
        yield server


@pytest.mark.parametrize("doorbell", ["coalesced", "transaction"])
async def test_postgres_restart_mid_burst_loses_and_duplicates_nothing(
    private_postgres: PgServer, doorbell: str
) -> None:
    server = private_postgres
    database = "restart"
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    migrate_to_head(server.admin_url(database))
    org = Org(new_organisation_ids(1)[0])
    seed_directory(server.admin_url(database), org)
    app_url = server.url("vechat_app", APP_PASSWORD, database)
    with running(app_url, 1, VECHAT_REALTIME_POLL_S="1", VECHAT_DOORBELL=doorbell) as (api,):
        conversation_id = await open_conversation(api.base, org.staff, org.client)
        receiver = Resuming(api, org.client)
        while receiver.since is None:
            await asyncio.sleep(0.05)
        start = receiver.since
        accepted: list[int] = []

        async def send_all(count: int) -> None:
            async with httpx.AsyncClient(base_url=api.base + API, timeout=5) as http:
                for i in range(count):
                    while True:  # retry with the same client_id until the API answers 201/200
                        with contextlib.suppress(httpx.TransportError):
                            response = await http.post(
                                f"/conversations/{conversation_id}/messages",
                                json={"body": f"burst {i}", "client_id": f"burst-{i}"},
                                headers=org.staff.headers,
                            )
                            if response.status_code in (200, 201):
                                accepted.append(int(response.json()["id"]))
                                break
                            # 503 + Retry-After while the database is away, never a 500.
                            assert response.status_code == 503, response.text
                            assert "retry-after" in response.headers
                        await asyncio.sleep(0.05)

        sender = asyncio.create_task(send_all(150))
        while len(accepted) < 40:
            await asyncio.sleep(0.01)
        postmaster = server.pid()
        await asyncio.to_thread(server.restart)
        assert server.pid() != postmaster
        await asyncio.wait_for(sender, 120)
        deadline = time.monotonic() + 30
        while len(receiver.events) < len(accepted) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a duplicate would show up by now
        await receiver.stop()
        api.wait_ready(timeout=15)  # /readyz: the listener is back (it backs off up to 5 s)
        assert api.output().count("realtime listener: listening") >= 2  # it reconnected
    created = [e["data"]["id"] for e in receiver.events if e["type"] == "message.created"]
    assert len(set(accepted)) == 150
    assert created == accepted  # every accepted message once, in order
    assert [e["seq"] for e in receiver.events] == list(range(start + 1, start + 151))
    assert receiver.resets == 0


async def test_server_killed_9_goes_offline_for_peers_within_the_lease(
    migrated_database: Database,
) -> None:
    # The default lease keeps "offline within 60 s": lease ≤ 45 s, then one sweep (≤ poll).
    assert Settings().presence_lease_s <= 45 and Settings().realtime_poll_s <= 10
    with pytest.raises(ConfigError):
        Settings(presence_lease_s=46)
    org = Org(new_organisation_ids(1)[0])
    seed_directory(migrated_database.admin_url, org)
    env = {"VECHAT_PRESENCE_LEASE_S": "3", "VECHAT_REALTIME_POLL_S": "1"}
    try:
        with running(migrated_database.app_url, 2, **env) as (survivor, doomed):
            conversation_id = await open_conversation(survivor.base, org.staff, org.client)
            assert conversation_id
            async with ws_client(survivor, org.client) as peer:
                await peer.ready()
                staff = await connect(doomed.ws_url(org.staff), open_timeout=10)
                await peer.frame("presence", user_id=org.staff.user_id, status="online")
                mark = len(peer.frames)
                killed_at = time.monotonic()
                doomed.kill()
                offline = await peer.frame(
                    "presence", timeout=20, after=mark, user_id=org.staff.user_id
                )
                took = time.monotonic() - killed_at
                assert offline["data"]["status"] == "offline"
                assert took < 3 + 1 + 3, took  # lease + poll + slack
                async with httpx.AsyncClient(base_url=survivor.base + API) as http:
                    shown = await http.get(
                        "/presence", params={"users": "personnel:11"}, headers=org.client.headers
                    )
                assert shown.json()[0]["status"] == "offline"
                with contextlib.suppress(Exception):
                    await staff.close()
    finally:
        purge_organisations(migrated_database.admin_url, [org.id])


@contextlib.asynccontextmanager
async def stalled_socket(server: Server, caller: Caller) -> AsyncIterator[Any]:
    """A socket that never reads: tiny receive buffer, client queue of one message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    async with connect(server.ws_url(caller), sock=sock, max_queue=1, open_timeout=10) as ws:
        yield ws


async def test_a_stalled_client_is_closed_1013_and_does_not_slow_others(
    migrated_database: Database,
) -> None:
    org = Org(new_organisation_ids(1)[0])
    seed_directory(migrated_database.admin_url, org)
    # Loopback buffers hold megabytes (the server's send buffer grows to tcp_wmem's 4 MiB), so the
    # frames are big: 200 x 50 kB outgrow every buffer and then the 20-frame queue. Random text,
    # because frames are compressed (permessage-deflate).
    body = secrets.token_urlsafe(37_500)
    count = 200
    env = {
        "VECHAT_WS_QUEUE_LIMIT": "20",
        "VECHAT_WS_SEND_TIMEOUT_S": "2",
        "VECHAT_MAX_MESSAGE_CHARS": "60000",
    }
    try:
        with running(migrated_database.app_url, 1, **env) as (api,):
            conversation_id = await open_conversation(api.base, org.staff, org.client)
            async with (
                stalled_socket(api, org.client) as stalled,
                ws_client(api, org.client) as healthy,
                ws_client(api, org.staff) as sender_tab,
            ):
                start = await healthy.ready()
                await sender_tab.ready()
                began = time.monotonic()
                async with httpx.AsyncClient(base_url=api.base + API, timeout=10) as http:
                    for i in range(count):
                        response = await http.post(
                            f"/conversations/{conversation_id}/messages",
                            json={"body": body, "client_id": f"stall-{i}"},
                            headers=org.staff.headers,
                        )
                        assert response.status_code == 201, response.text
                await healthy.events_through(start + count, timeout=30)
                await sender_tab.wait_for(lambda fs: len([f for f in fs if "seq" in f]) >= count)
                took = time.monotonic() - began
                assert healthy.seqs() == list(range(start + 1, start + count + 1))
                # Now read what the stalled socket got before the server gave up on it (a frame
                # unsent for 2 s).
                await asyncio.sleep(3)
                seqs: list[int] = []
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(30):
                        while True:
                            frame = json.loads(await stalled.recv())
                            if "seq" in frame:
                                seqs.append(frame["seq"])
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
                assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert seqs[-1] < start + count, "the stalled socket was not dropped"
            # It resumes where it stopped and gets the rest, exactly.
            async with ws_client(api, org.client, since=seqs[-1]) as resumed:
                await resumed.ready(timeout=20)
                assert resumed.seqs() == list(range(seqs[-1] + 1, start + count + 1))
        assert took < 60, took
    finally:
        purge_organisations(migrated_database.admin_url, [org.id])
