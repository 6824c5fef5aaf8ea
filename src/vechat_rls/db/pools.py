"""Connections: the pool of one database (`Database`), and connections of their own.

The tenant context is transaction-local, so a released connection carries nothing into the next
request: the pool skips asyncpg's reset query on release. JSON columns travel as Python objects,
encoded and decoded by msgspec.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

from vechat_rls.config import Settings
from vechat_rls.db import context
from vechat_rls.db.driver import (
    CONNECT_FAILURES,
    CONNECT_TIMEOUT_S,
    PING_FAILURES,
    PING_TIMEOUT_S,
    Connection,
    DatabaseUnavailable,
    Pool,
)
from vechat_rls.db.transaction import Ring, Transaction, tenant
from vechat_rls.identity import Identity

if TYPE_CHECKING:
    from vechat_rls.db.budget import ConnectionBudget


async def _no_reset(conn: Connection) -> None:
    """Release without a round trip: the tenant context is transaction-local (see module doc).

    asyncpg still rolls back a transaction left open before calling this hook, so a connection
    never goes back to the pool mid-transaction.
    """


def _json_encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# Array types the service's statements take or return. asyncpg learns how to encode an array
# type with an introspection query the first time a connection meets it (10-30 ms of planning
# on a busy server); met first by a request, it stalled the first deliveries of every new
# connection at once -- p99 outliers of 30-90 ms in bench/realtime.py's latency runs. Learnt here,
# when the connection opens, it costs the same once and no request waits for it.
_ARRAY_TYPES_SQL = "SELECT $1::pg_catalog.int8[], $2::pg_catalog.text[]"


async def init_connection(conn: Connection) -> None:
    # json/jsonb columns travel as Python objects, encoded and decoded by msgspec.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_json_encode, decoder=msgspec.json.decode
        )
    await conn.prepare(_ARRAY_TYPES_SQL)


async def create_pool(url: str, *, min_size: int = 0, max_size: int = 10, **kwargs: Any) -> Pool:
    """A pool without reset-on-release and with msgspec JSON codecs.

    `min_size` connections are opened in the background, so a pool can be created while the
    database is down (requests then answer 503 until it is back).
    """
    pool = asyncpg.create_pool(
        url,
        min_size=0,
        max_size=max_size,
        reset=_no_reset,
        init=init_connection,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"application_name": "vechat-rls"},
        **kwargs,
    )
    await pool
    if min_size:
        start_warm_up(pool, min_size)
    return pool


def start_warm_up(pool: Pool, count: int) -> None:
    """Open `count` connections of `pool` in the background (failures are ignored)."""
    task = asyncio.get_running_loop().create_task(_warm_up(pool, count))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def _warm_up(pool: Pool, count: int) -> None:
    with contextlib.suppress(Exception):
        conns = [await pool.acquire(timeout=CONNECT_TIMEOUT_S) for _ in range(count)]
        for conn in conns:
            await pool.release(conn)


class Database:
    """One database's pool plus the settings its transactions need.

    Registry mode gives each database the process's `budget`: its pool then opens connections
    through the budget and lets one go after `VECHAT_POOL_IDLE_S` unused.
    """

    def __init__(
        self, settings: Settings, url: str | None = None, *, budget: ConnectionBudget | None = None
    ) -> None:
        self.settings = settings
        if settings.context_key:
            context.use_keys(settings.context_key)
        self.url = url or settings.database_url
        self.budget = budget
        self._pool: Pool | None = None
        # The ringer's, set by the realtime engine in coalesced doorbell mode (realtime/ringer.py).
        self.ring: Ring | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("Database.open() has not been awaited")
        return self._pool

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def label(self) -> str:
        """host:port/database, for messages (never the password)."""
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"

    async def open(self, *, warm_up: bool = True) -> None:
        """Create the pool; `VECHAT_POOL_MIN` connections open in the background unless not
        `warm_up` (then `warm_up()` later)."""
        options: dict[str, Any] = {}
        if self.budget is not None:
            options = {
                "connect": self.budget.connect,
                "max_inactive_connection_lifetime": float(self.settings.pool_idle_s),
            }
        self._pool = await create_pool(
            self.url,
            min_size=self.settings.pool_min if warm_up else 0,
            max_size=self.settings.pool_max,
            **options,
        )

    def warm_up(self) -> None:
        if self.settings.pool_min:
            start_warm_up(self.pool, self.settings.pool_min)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)

    def tenant(
        self, identity: Identity, *, readonly: bool = False, appends_events: bool = True
    ) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """See `tenant()`; uses this database's statement timeout."""
        return tenant(self, identity, readonly=readonly, appends_events=appends_events)

    async def ping(self) -> None:
        """Raise `DatabaseUnavailable` unless a query round trip succeeds within 2 s."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except PING_FAILURES as exc:
            raise DatabaseUnavailable(f"database {self.label} unreachable") from exc


async def connect(
    url: str, *, budget: ConnectionBudget | None = None, **server_settings: str
) -> Connection:
    """A connection of its own, outside any pool (the ringer's); the caller closes it.

    With a `budget` (registry mode) it counts against the process's connection cap.
    """
    opener = budget.connect if budget is not None else asyncpg.connect
    conn: Connection = await opener(url, timeout=CONNECT_TIMEOUT_S, server_settings=server_settings)
    return conn


CONNECT_ERRORS = CONNECT_FAILURES  # what `connect` raises when the database is not there
