"""The connection budget of registry mode: at most `VECHAT_POOL_TOTAL_MAX` connections open at
once, whoever opens them (pools, listeners, ringers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from vechat_rls.db.driver import (
    ACQUIRE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    ConnectionBudgetExhausted,
    Pool,
    Record,
)

BUDGET_POLL_S = 0.05
ABORT_GRACE_S = 0.1  # an aborted connection keeps its slot this long: its backend is exiting
CLOSED_UNSEEN_S = 5.0  # a connection closed without telling us leaves the count after this long


class ConnectionBudget:
    """At most `limit` connections open at once, whoever opens them: pools, listeners, ringers.

    Every connection of registry mode is opened by `connect` (asyncpg's `connect`, with the
    same arguments), which waits while the process is at its limit. Waiting, it first asks
    `evict` (set by the fleet) to close one idle connection somewhere — a pooled connection no
    request holds, a ringer's between rings — and tries again; when nothing can be closed it
    looks again every 50 ms, until `timeout`, then raises `ConnectionBudgetExhausted` (the API
    answers 503).

    A connection counts from the moment it is being opened until PostgreSQL has let it go: a
    graceful close returns once the server has closed the socket, which a backend keeps until it
    has exited (so `pg_stat_activity` never shows more than `limit`); a connection aborted from
    this side (asyncpg's own idle timeout, a broken one) keeps its slot `ABORT_GRACE_S` longer,
    the time its backend takes to notice and exit.
    """

    def __init__(self, limit: int, *, timeout: float = ACQUIRE_TIMEOUT_S) -> None:
        self.limit = limit
        self.timeout = timeout
        self.evict: Callable[[], Awaitable[bool]] = _nothing_to_evict
        self.opened = 0  # connections opened through the budget, ever (tests, metrics)
        self._live: set[asyncpg.Connection[Record]] = set()
        self._closed_unseen: dict[asyncpg.Connection[Record], float] = {}
        self._opening = 0
        self._freed: asyncio.Event | None = None

    def in_use(self) -> int:
        """Connections open, being opened, or closing, now."""
        now = time.monotonic()
        for conn in [c for c in self._live if c.is_closed()]:
            # Closed without its termination callback (asyncpg runs one on every close path it
            # knows of): a safety net, so that the count cannot leak.
            if now - self._closed_unseen.setdefault(conn, now) >= CLOSED_UNSEEN_S:
                self._free(conn)
        return len(self._live) + self._opening

    async def connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection[Record]:
        await self._take()
        try:
            conn: asyncpg.Connection[Record] = await asyncpg.connect(*args, **kwargs)
        finally:
            self._opening -= 1
        self._live.add(conn)
        self.opened += 1
        # The callback gets the pool's proxy while the connection is acquired: keep our own.
        conn.add_termination_listener(lambda _ref: self._closed(conn))
        return conn

    async def _take(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.in_use() >= self.limit:
            if await self.evict():
                await asyncio.sleep(0)  # let the closed connection's callback free its slot
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionBudgetExhausted(
                    f"all {self.limit} connections of VECHAT_POOL_TOTAL_MAX are in use"
                )
            if self._freed is None:
                self._freed = asyncio.Event()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, BUDGET_POLL_S)):
                    await self._freed.wait()
        self._opening += 1

    def _closed(self, conn: asyncpg.Connection[Record]) -> None:
        # asyncpg marks a connection it aborted (rather than closed with the server) `_aborted`;
        # unknown counts as aborted.
        if getattr(conn, "_aborted", True):
            asyncio.get_running_loop().call_later(ABORT_GRACE_S, self._free, conn)
        else:
            self._free(conn)

    def _free(self, conn: asyncpg.Connection[Record]) -> None:
        self._live.discard(conn)
        self._closed_unseen.pop(conn, None)
        if self._freed is not None:
            self._freed.set()


async def _nothing_to_evict() -> bool:
    return False


async def close_idle_connection(pool: Pool) -> bool:
    """Close one connection of `pool` that no one holds, gracefully; False when there is none.

    asyncpg has no public call for this; it is what the pool itself does to a connection idle
    for `max_inactive_connection_lifetime` (an idle `PoolConnectionHolder` closed), except that
    the close waits for the server: the holder stays in the pool and connects again when it is
    next acquired (a closing connection already counts as closed to it).
    """
    for holder in getattr(pool, "_holders", ()):
        if holder.is_connected() and holder.is_idle():
            # Inline, not `asyncio.wait_for` (a task started on the next turn of the loop, by
            # when a request may have taken the connection): the close marks the connection
            # closed before it first waits, so whoever acquires the holder next reconnects.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await holder.close()
            return True
    return False
