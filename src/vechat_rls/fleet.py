"""Registry mode: each organisation's database, its pool opened on first use and closed when idle.

One `Slot` per registry database, opened when a request of one of its organisations first needs
it (after the same role check as `serve` at startup) and closed after `VECHAT_POOL_IDLE_S` unused.
An organisation goes to the entry listing it, else to the `["*"]` entry, else it is not served
(401). Every connection of the process counts against one `db.ConnectionBudget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.registry import Entry, Registry

log = logging.getLogger(__name__)

SWEEP_MAX_S = 5.0
CHECK_TIMEOUT_S = 2.0  # one database's readiness answer (api/health.py waits 3 s for all)
OK, IDLE, UNAVAILABLE = "ok", "idle", "unavailable"


class Companion(Protocol):
    """What lives exactly as long as one database's pool: the realtime layer's ringer."""

    async def release_idle_connection(self) -> bool: ...

    async def stop(self) -> None: ...


CompanionFactory = Callable[[db.Database], Companion]


class NoDatabaseReachable(db.DatabaseUnavailable):
    """Readiness: no database of the registry answers; `checks` says what each one does."""

    def __init__(self, checks: dict[str, str]) -> None:
        super().__init__("no database of the registry is reachable")
        self.checks = checks


@dataclass(eq=False)
class Slot:
    """One registry database in this process."""

    entry: Entry
    database: db.Database
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # requests and realtime engines holding it now
    last_used: float = 0.0  # monotonic time the last of them let go
    failed: str | None = None  # why the last attempt to open it failed; None once it opened
    attempts: int = 0  # attempts to open it so far
    companion: Companion | None = None

    @property
    def name(self) -> str:
        return self.entry.name


class Fleet:
    """Every database of `registry`, opened lazily, under one connection budget."""

    def __init__(
        self, registry: Registry, settings: Settings, *, allow_privileged_role: bool = False
    ) -> None:
        registry.require_serving()
        self.registry = registry
        self.settings = settings
        self.allow_privileged_role = allow_privileged_role
        self.budget = db.ConnectionBudget(settings.pool_total_max)
        self.budget.evict = self._evict_one
        self.slots: dict[str, Slot] = {}
        self._by_organisation: dict[int, Slot] = {}
        self._shared: Slot | None = None
        for entry in registry.entries:
            database = db.Database(settings, entry.require_url(), budget=self.budget)
            slot = self.slots[entry.name] = Slot(entry, database)
            for organisation_id in entry.organisations:
                self._by_organisation[organisation_id] = slot
            if entry.shared:
                self._shared = slot
        self._companion: CompanionFactory | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._gauges = _gauges()

    # ------------------------------------------------------------------------------ routing

    def slot_for(self, organisation_id: int) -> Slot | None:
        """The database of `organisation_id`: the entry listing it, else `["*"]`, else None."""
        return self._by_organisation.get(organisation_id, self._shared)

    def serves(self, organisation_id: int) -> bool:
        return organisation_id in self._by_organisation or self._shared is not None

    @contextlib.asynccontextmanager
    async def lease(self, organisation_id: int) -> AsyncIterator[db.Database]:
        """The organisation's database, open, for the block (it is not closed while held).

        Raises `LookupError` for an organisation no entry places (the API refuses those before
        asking), `db.DatabaseUnavailable` when its pool cannot be opened.
        """
        slot = self.slot_for(organisation_id)
        if slot is None:
            raise LookupError(f"organisation {organisation_id} is not served here")
        database = await self.hold(slot)
        try:
            yield database
        finally:
            self.let_go(slot)

    async def hold(self, slot: Slot) -> db.Database:
        """Open `slot`'s pool if needed and count one more user of it; `let_go` when done."""
        database = slot.database
        if database.is_open:
            slot.users += 1
            return database
        attempts = slot.attempts
        async with slot.lock:
            if not database.is_open:
                if slot.attempts != attempts:
                    # It failed to open while this one waited: fail as fast as the others.
                    raise db.DatabaseUnavailable(f"database {slot.name} unavailable")
                await self._open(slot)
            slot.users += 1
        return database

    def let_go(self, slot: Slot, *, used: bool = True) -> None:
        slot.users -= 1
        if used:
            slot.last_used = time.monotonic()

    # ------------------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        for slot in self.slots.values():
            self._export(slot)
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_loop(), name="vechat-fleet-sweeper"
        )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for slot in self.slots.values():
            await self._close(slot)

    async def set_companion(self, factory: CompanionFactory | None) -> None:
        """What to start beside each pool when it opens (the ringer); None stops them all."""
        self._companion = factory
        if factory is None:
            for slot in self.slots.values():
                await self._stop_companion(slot)

    async def _open(self, slot: Slot) -> None:
        database = slot.database
        slot.attempts += 1
        try:
            await database.open(warm_up=False)
            # The role check of `serve`, on this pool's first connection: a database that was
            # away at startup is checked before it serves anyone.
            await db.check_role_safety(database, allow_privileged=self.allow_privileged_role)
        except BaseException as exc:
            slot.failed = _reason(exc)
            await database.close()
            if isinstance(exc, db.RoleSafetyError):
                log.error("refusing to serve database %s: %s", slot.name, exc)
                raise db.DatabaseUnavailable(f"database {slot.name} refused") from exc
            raise
        slot.failed = None
        slot.last_used = time.monotonic()
        database.warm_up()
        if self._companion is not None:
            slot.companion = self._companion(database)
        log.info("database %s: pool opened", slot.name)
        self._export(slot)

    async def _close(self, slot: Slot) -> None:
        async with slot.lock:
            if not slot.database.is_open:
                return
            await self._stop_companion(slot)
            await slot.database.close()
        log.info("database %s: pool closed", slot.name)
        self._export(slot)

    async def _stop_companion(self, slot: Slot) -> None:
        companion, slot.companion = slot.companion, None
        slot.database.ring = None
        if companion is not None:
            with contextlib.suppress(Exception):
                await companion.stop()

    async def _sweep_loop(self) -> None:
        idle_s = self.settings.pool_idle_s
        every = max(0.1, min(idle_s / 4, SWEEP_MAX_S))
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for slot in list(self.slots.values()):
                if slot.database.is_open and not slot.users and now - slot.last_used >= idle_s:
                    try:
                        await self._close(slot)
                    except Exception:
                        log.exception("database %s: closing its idle pool failed", slot.name)
                self._export(slot)

    async def _evict_one(self) -> bool:
        """At the cap: close one idle connection, of the least recently used database first."""
        open_slots = sorted(
            (s for s in self.slots.values() if s.database.is_open), key=lambda s: s.last_used
        )
        for slot in open_slots:
            if slot.database.is_open and await db.close_idle_connection(slot.database.pool):
                return True
        for slot in open_slots:
            companion = slot.companion
            if companion is not None and await companion.release_idle_connection():
                return True
        return False

    # ------------------------------------------------------------------------------ readiness

    async def readiness(self) -> dict[str, str]:
        """`database:<name>` → ok, idle (no pool open here: not checked) or unavailable.

        An open pool is pinged; a database whose last opening failed is tried again (so
        readiness sees it come back); the others are not touched, so that probes neither open
        pools nor keep them open. Raises `NoDatabaseReachable` when every database is
        unavailable: then this process can serve no one.
        """
        slots = list(self.slots.values())
        states = await asyncio.gather(*(self._state(slot) for slot in slots))
        checks = {f"database:{slot.name}": state for slot, state in zip(slots, states, strict=True)}
        if all(state == UNAVAILABLE for state in states):
            raise NoDatabaseReachable(checks)
        return checks

    async def _state(self, slot: Slot) -> str:
        if not slot.database.is_open and slot.failed is None:
            return IDLE
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                database = await self.hold(slot)
                try:
                    await database.ping()
                finally:
                    self.let_go(slot, used=False)  # a probe does not keep a pool open
        except Exception:
            return UNAVAILABLE
        return OK

    # ------------------------------------------------------------------------------ metrics

    def _export(self, slot: Slot) -> None:
        pools, connections, in_use = self._gauges
        is_open = slot.database.is_open
        pools.labels(slot.name).set(1 if is_open else 0)
        connections.labels(slot.name).set(slot.database.pool.get_size() if is_open else 0)
        in_use.set(self.budget.in_use())


_GAUGES: tuple[Any, Any, Any] | None = None


def _gauges() -> tuple[Any, Any, Any]:
    """`/metrics` gauges of registry mode, registered the first time a fleet is made."""
    global _GAUGES
    if _GAUGES is None:
        from prometheus_client import Gauge

        _GAUGES = (
            Gauge(
                "vechat_database_pool_open",
                "1 while this database's pool is open in the process (registry mode)",
                ["database"],
                multiprocess_mode="livesum",
            ),
            Gauge(
                "vechat_database_connections",
                "pooled connections open to this database (registry mode)",
                ["database"],
                multiprocess_mode="livesum",
            ),
            Gauge(
                "vechat_connections_in_use",
                "connections open to registry databases: pools, listeners, ringers",
                multiprocess_mode="livesum",
            ),
        )
    return _GAUGES


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
