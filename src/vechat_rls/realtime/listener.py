"""The listener: one dedicated connection that LISTENs for doorbells, reconnecting with backoff.

Every notification is opened (db/seal.py) and goes to its channel's callback; one that does
not open — sent by someone other than the service, from psql or any login — is dropped and
counted (`dropped`, and `vechat_notifications_dropped_total` in /metrics). What opens is still
trusted no further than "look again". NOTIFY is not durable, so after every (re)connect
`on_connect` runs (the hub catches everyone up from the event log); a keepalive query notices a
connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from vechat_rls.db import UNREACHABLE_ERRORS, ConnectionBudget, seal
from vechat_rls.realtime.tasks import stop_task

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "vechat_events"  # rung by the vechat_events_after_insert trigger
PRESENCE_CHANNEL = "vechat_presence"  # rung by vechat.set_leases / vechat.sweep_leases
TYPING_CHANNEL = "vechat_typing"  # rung by a participant's typing frame (realtime/hub.py)
CHANNELS = (EVENTS_CHANNEL, PRESENCE_CHANNEL, TYPING_CHANNEL)

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
KEEPALIVE_S = 5.0
CONNECT_TIMEOUT_S = 5.0

NotificationHandler = Callable[[Any], None]
"""Gets what a notification opened to (`seal.open_`): the sealed payload, or `seal.DOORBELL`."""

dropped: Counter[str] = Counter()
"""Notifications dropped in this process because they did not open, per channel (tests)."""

_METRIC: Any = None


def _count_dropped(channel: str) -> None:
    global _METRIC
    dropped[channel] += 1
    if _METRIC is None:
        from prometheus_client import Counter as PromCounter

        _METRIC = PromCounter(
            "vechat_notifications_dropped",
            "notifications the service did not send (forged, stale or unreadable), dropped",
            ["channel"],
        )
    _METRIC.labels(channel).inc()

_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
)


class ListenerUnavailable(Exception):
    """The listener has no live connection (readiness reports it)."""


class Listener:
    """LISTEN on `handlers`' channels for the life of `run()`; `on_connect` after each connect."""

    def __init__(
        self,
        url: str,
        handlers: Mapping[str, NotificationHandler],
        on_connect: Callable[[], Awaitable[None]],
        *,
        budget: ConnectionBudget | None = None,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.handlers = dict(handlers)
        self.on_connect = on_connect
        self.budget = budget
        self._of = f" (database {name})" if name else ""  # for log lines
        self.connects = 0  # how many times a connection was established (tests, metrics)
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self._conn is not None and not self._conn.is_closed()

    async def check(self) -> None:
        """Readiness check: raises `ListenerUnavailable` unless LISTEN is in place."""
        if not self.connected:
            raise ListenerUnavailable("realtime listener is not connected")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vechat-listener")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        await self._close()

    async def _run(self) -> None:
        delay = BACKOFF_FIRST_S
        while True:
            try:
                await self._connect()
                delay = BACKOFF_FIRST_S
                await self.on_connect()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except _CONNECTION_ERRORS as exc:
                log.warning(
                    "realtime listener: connection lost (%s)%s", type(exc).__name__, self._of
                )
            except Exception:
                log.exception("realtime listener: unexpected error%s", self._of)
            self._ready.clear()
            await self._close()
            # Full jitter: many processes losing one server do not all come back at once.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _connect(self) -> None:
        self._lost.clear()
        opener = self.budget.connect if self.budget is not None else asyncpg.connect
        conn: asyncpg.Connection[asyncpg.Record] = await opener(
            self.url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": "vechat-rls listener"},
        )
        self._conn = conn
        conn.add_termination_listener(lambda _conn: self._lost.set())
        for channel, handler in self.handlers.items():
            await conn.add_listener(channel, _dispatch(channel, handler))
        self.connects += 1
        self._ready.set()
        log.info("realtime listener: listening on %s%s", ", ".join(self.handlers), self._of)

    async def _watch(self) -> None:
        """Return when the connection is gone: closed by the server, or silent for a keepalive."""
        conn = self._conn
        assert conn is not None
        while not self._lost.is_set():
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KEEPALIVE_S):
                    await self._lost.wait()
                break
            await conn.fetchval("SELECT 1", timeout=KEEPALIVE_S)
        raise ConnectionResetError("listener connection closed")

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()


def _dispatch(channel: str, handler: NotificationHandler) -> Callable[..., None]:
    def callback(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        opened = seal.open_(channel, payload)
        if opened is None:
            _count_dropped(channel)
            log.info("realtime listener: dropped a %s notification the service did not send",
                     channel)
            return
        try:
            handler(opened)
        except Exception:
            # A payload that opened but does not fit its channel must not stop the listener.
            _count_dropped(channel)
            log.warning("realtime listener: ignored a bad %s notification", channel, exc_info=True)

    return callback
