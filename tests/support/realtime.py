"""Helpers for the realtime tests: `vechat-rls serve` processes and WebSocket clients that record.

Servers are real processes (`python -m vechat_rls.cli serve`) on the session's PostgreSQL, logged in
as `vechat_app`, signing tokens with the HTTP tests' secret, so `Caller` headers work on both.
Clients use the `websockets` library and keep every frame they receive, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import SECRET, Caller, wait_ready
from vechat_rls.auth import mint_token
from vechat_rls.pgserver import free_port

API = "/api/v1"
Frame = dict[str, Any]


class Server:
    """One `vechat-rls serve` process (one worker) on a free port."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}{API}/ws"
        environment = {
            **os.environ,
            "VECHAT_DATABASE_URL": database_url,
            "VECHAT_JWT_SECRET": SECRET,
            "VECHAT_POOL_MIN": "0",
            "VECHAT_POOL_MAX": "6",
            "VECHAT_RATE_LIMIT_PER_MIN": "100000",
            **env,
        }
        # A file, not a pipe: nobody reads the log while the server runs, and a full pipe would
        # block it.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            # One worker, said so: a test kills, counts and reads the logs of one process.
            [sys.executable, "-m", "vechat_rls.cli", "serve", "--port", str(self.port),
             "--workers", "1"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_ready(self.base, self.proc, self.output, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease removal."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ws_url(self, caller: Caller, since: int | None = None) -> str:
        token = mint_token(
            key=SECRET,
            organisation_id=caller.organisation_id,
            user_id=caller.user_id,
            user_type=caller.user_type,
        )
        url = f"{self.ws_base}?access_token={token}"
        return url if since is None else f"{url}&since={since}"


@contextlib.contextmanager
def running(database_url: str, count: int = 1, **env: str) -> Iterator[list[Server]]:
    servers = [Server(database_url, **env) for _ in range(count)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
            # Shown by pytest only when a test of the module failed.
            print(f"--- server on port {server.port} ---\n{server.output()}")


class Client:
    """A WebSocket of one user that records every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self._arrived = asyncio.Condition()
        self.closed_code: int | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                async with self._arrived:
                    self.frames.append(frame)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed_code = self.ws.close_code
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(
        self, predicate: Callable[[list[Frame]], bool], timeout: float = 10
    ) -> list[Frame]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self.frames))
        return self.frames

    async def frame(
        self, kind: str, timeout: float = 10, after: int = 0, **match: Any
    ) -> Frame:
        """The first frame of type `kind` at index ≥ `after` whose data has `match`."""

        def found() -> Frame | None:
            for frame in self.frames[after:]:
                data = frame.get("data") or {}
                if frame.get("type") == kind and all(
                    isinstance(data, dict) and data.get(k) == v for k, v in match.items()
                ):
                    return frame
            return None

        await self.wait_for(lambda _: found() is not None, timeout)
        result = found()
        assert result is not None
        return result

    def events(self) -> list[Frame]:
        return [f for f in self.frames if "seq" in f]

    def seqs(self) -> list[int]:
        return [int(f["seq"]) for f in self.events()]

    async def events_through(self, seq: int, timeout: float = 10) -> list[Frame]:
        await self.wait_for(lambda frames: any(f.get("seq", 0) >= seq for f in frames), timeout)
        return self.events()

    async def ready(self, timeout: float = 10) -> int:
        frame = await self.frame("ready", timeout)
        return int(frame["data"]["seq"])

    async def closed(self, timeout: float = 10) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.closed_code

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await self._reader


@contextlib.asynccontextmanager
async def ws_client(
    server: Server, caller: Caller, since: int | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    async with connect(server.ws_url(caller, since), open_timeout=10, **kwargs) as ws:
        client = Client(ws)
        try:
            yield client
        finally:
            await client.close()


async def open_client(server: Server, caller: Caller, since: int | None = None) -> Client:
    """A client the test closes itself (`await client.close()`)."""
    ws = await connect(server.ws_url(caller, since), open_timeout=10)
    return Client(ws)


def last_seq(admin_url: str, caller: Caller) -> int:
    import psycopg

    with psycopg.connect(admin_url) as conn:
        row = conn.execute(
            """SELECT coalesce(max(last_seq), 0) FROM vechat_event_cursors
               WHERE organisation_id = %s AND user_type = %s AND user_id = %s""",
            (caller.organisation_id, caller.user_type, caller.user_id),
        ).fetchone()
    return int(row[0]) if row else 0
