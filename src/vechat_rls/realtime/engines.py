"""The realtime engine for the life of the process, and which hub a socket joins.

`run_one` (one database) and `run_fleet` (registry mode) start and stop what delivery needs: the
pacer, the ringer (coalesced doorbell mode), and the hub with its listener. A NOTIFY reaches only
one database's listeners, so registry mode runs an engine per database with sockets here,
started with its first socket and stopped `VECHAT_POOL_IDLE_S` after its last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.fleet import OK, UNAVAILABLE, Fleet, Slot
from vechat_rls.identity import Identity
from vechat_rls.realtime.hub import Hub
from vechat_rls.realtime.listener import Listener
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.ringer import Ringer

log = logging.getLogger(__name__)


class Hubs(Protocol):
    """Where the WebSocket endpoint gets the hub of a socket, and says when it is gone."""

    async def acquire(self, identity: Identity) -> Hub: ...

    def release(self, hub: Hub) -> None: ...


class OneHub:
    """One database: the process's hub, started and stopped with the app, for every socket."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def acquire(self, identity: Identity) -> Hub:
        return self.hub

    def release(self, hub: Hub) -> None:
        pass


@dataclass(eq=False)
class Engine:
    """One database's hub and listener in this process."""

    slot: Slot
    hub: Hub
    listener: Listener
    sockets: int = 0
    linger: asyncio.TimerHandle | None = None


class Engines:
    """Registry mode: an engine per database with sockets here (module docstring)."""

    def __init__(
        self, fleet: Fleet, settings: Settings, pacer: Pacer, *, linger_s: float | None = None
    ) -> None:
        self.fleet = fleet
        self.settings = settings
        self.pacer = pacer
        self.linger_s = float(settings.pool_idle_s) if linger_s is None else linger_s
        self.running: dict[str, Engine] = {}
        self._of_hub: dict[Hub, Engine] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._stopping: set[asyncio.Task[None]] = set()

    async def acquire(self, identity: Identity) -> Hub:
        """The hub of the socket's database, its engine started if need be; `release` after.

        Raises `db.DatabaseUnavailable` when the database cannot be opened (the socket is then
        closed 1013, as when one database is down), `LookupError` for an organisation no
        registry entry places (refused before this, with 4401).
        """
        slot = self.fleet.slot_for(identity.organisation_id)
        if slot is None:
            raise LookupError(f"organisation {identity.organisation_id} is not served here")
        engine = self.running.get(slot.name)
        if engine is None:
            async with self._locks[slot.name]:
                engine = self.running.get(slot.name)
                if engine is None:
                    engine = await self._start(slot)
        engine.sockets += 1
        if engine.linger is not None:
            engine.linger.cancel()
            engine.linger = None
        return engine.hub

    def release(self, hub: Hub) -> None:
        """A socket of `hub` is gone; the engine stops `linger_s` after its last one."""
        engine = self._of_hub.get(hub)
        if engine is None:
            return
        engine.sockets -= 1
        if engine.sockets == 0 and engine.linger is None:
            engine.linger = asyncio.get_running_loop().call_later(
                self.linger_s, self._linger_over, engine
            )

    async def readiness(self) -> dict[str, str]:
        """`realtime:<database>` → ok while its listener is connected, else unavailable.

        Never fails the process as a whole: one database's listener reconnecting concerns only
        that database's sockets (they are caught up from the event log once it is back).
        """
        return {
            f"realtime:{name}": OK if engine.listener.connected else UNAVAILABLE
            for name, engine in sorted(self.running.items())
        }

    async def stop(self) -> None:
        """Stop every engine (the process is shutting down)."""
        for task in list(self._stopping):
            with contextlib.suppress(Exception):
                await task
        for name in list(self.running):
            async with self._locks[name]:
                engine = self.running.pop(name, None)
                if engine is not None:
                    await self._stop(engine)

    async def _start(self, slot: Slot) -> Engine:
        database = await self.fleet.hold(slot)
        try:
            hub = Hub(database, self.settings, self.pacer)
            listener = Listener(
                database.url,
                hub.notification_handlers(),
                on_connect=hub.catch_up_all,
                budget=self.fleet.budget,
                name=slot.name,
            )
            hub.start()
            listener.start()
        except BaseException:
            self.fleet.let_go(slot)
            raise
        engine = Engine(slot, hub, listener)
        self.running[slot.name] = engine
        self._of_hub[hub] = engine
        log.info("realtime: database %s: hub and listener started", slot.name)
        return engine

    def _linger_over(self, engine: Engine) -> None:
        engine.linger = None
        task = asyncio.get_running_loop().create_task(self._stop_if_idle(engine))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop_if_idle(self, engine: Engine) -> None:
        name = engine.slot.name
        async with self._locks[name]:
            if engine.sockets or self.running.get(name) is not engine:
                return  # a socket came back meanwhile
            del self.running[name]
            await self._stop(engine)

    async def _stop(self, engine: Engine) -> None:
        if engine.linger is not None:
            engine.linger.cancel()
            engine.linger = None
        self._of_hub.pop(engine.hub, None)
        try:
            await engine.listener.stop()
            await engine.hub.stop()
        finally:
            self.fleet.let_go(engine.slot)
        log.info("realtime: database %s: hub and listener stopped", engine.slot.name)


@dataclass
class Running:
    """The realtime engine while it runs: where sockets find their hub, and its readiness."""

    hubs: Hubs
    readiness: Callable[[], Awaitable[dict[str, str] | None]]
    hub: Hub | None = None  # one database: the hub, its listener and its ringer
    listener: Listener | None = None
    ringer: Ringer | None = None


@contextlib.asynccontextmanager
async def run_one(database: db.Database, settings: Settings) -> AsyncIterator[Running]:
    """Hub, listener, pacer and (coalesced doorbell mode) ringer of one database.

    The ringer is installed on the database before this yields, so every write transaction
    rings through it (realtime/ringer.py). Readiness reports the listener.
    """
    pacer = Pacer(settings.delivery_pace_ms / 1000)
    ringer: Ringer | None = None
    if settings.doorbell == "coalesced":
        ringer = Ringer(database.url, settings.doorbell_batch_ms / 1000, pacer)
        ringer.start()
        database.ring = ringer.ring
    hub = Hub(database, settings, pacer)
    listener = Listener(database.url, hub.notification_handlers(), on_connect=hub.catch_up_all)
    hub.start()
    listener.start()
    try:
        yield Running(OneHub(hub), listener.check, hub, listener, ringer)
    finally:
        await listener.stop()
        await hub.stop()
        if ringer is not None:
            database.ring = None
            await ringer.stop()


@contextlib.asynccontextmanager
async def run_fleet(fleet: Fleet, settings: Settings) -> AsyncIterator[Running]:
    """Registry mode: a ringer beside each open pool, an engine per database with sockets.

    Every write rings its own database's doorbell, whether or not this process has sockets
    there: other processes may. The ringer starts with the pool and stops with it.
    """
    pacer = Pacer(settings.delivery_pace_ms / 1000)
    if settings.doorbell == "coalesced":

        def ringer_for(database: db.Database) -> Ringer:
            ringer = Ringer(
                database.url, settings.doorbell_batch_ms / 1000, pacer, budget=fleet.budget
            )
            ringer.start()
            database.ring = ringer.ring
            return ringer

        await fleet.set_companion(ringer_for)
    engines = Engines(fleet, settings, pacer)
    try:
        yield Running(engines, engines.readiness)
    finally:
        await engines.stop()
        await fleet.set_companion(None)
