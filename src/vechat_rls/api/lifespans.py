"""What runs for the life of the app: the database pools, the realtime engine, then the collector.

Each is a context manager in `LIFESPANS` (api/app.py), entered in order at startup and left in
reverse at shutdown; one that can fail registers a readiness check in `app.state.readiness`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from litestar import Litestar

from vechat_rls import db
from vechat_rls.api.health import ReadinessCheck
from vechat_rls.fleet import Fleet
from vechat_rls.realtime import engines


@contextlib.asynccontextmanager
async def database_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The pool for the life of the process; the app starts even while the database is down.

    Registry mode: the fleet's pools open on first use and close when idle (fleet.py).
    """
    readiness: dict[str, ReadinessCheck] = app.state.readiness
    fleet: Fleet | None = app.state.fleet
    if fleet is not None:
        await fleet.start()
        readiness["databases"] = fleet.readiness
        try:
            yield
        finally:
            readiness.pop("databases", None)
            await fleet.close()
        return
    database: db.Database = app.state.database
    await database.open()
    readiness["database"] = database.ping
    try:
        yield
    finally:
        readiness.pop("database", None)
        await database.close()


@contextlib.asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The realtime engine (realtime/engines.py): one, or in registry mode one per database.

    `app.state.hubs` is where the WebSocket endpoint finds a socket's hub; `/readyz` reports
    the listener(s).
    """
    fleet: Fleet | None = app.state.fleet
    if fleet is not None:
        running = engines.run_fleet(fleet, app.state.settings)
    else:
        running = engines.run_one(app.state.database, app.state.settings)
    async with running as engine:
        app.state.hubs = engine.hubs
        app.state.hub, app.state.listener, app.state.ringer = (
            engine.hub,
            engine.listener,
            engine.ringer,
        )
        app.state.readiness["realtime"] = engine.readiness
        try:
            yield
        finally:
            app.state.readiness.pop("realtime", None)


@contextlib.asynccontextmanager
async def collector_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Once everything has started, the objects it made are left out of garbage collection.

    A full collection walks every tracked object, and a started app has tens of thousands
    (modules, routes, schemas, pools): walked under load, they stopped the event loop for ~20 ms
    on this machine at each full collection, and every delivery in flight waited. `gc.freeze()`
    moves them to the permanent generation, so a full collection only walks what came after
    (sockets, requests). Undone at shutdown, so that an app created again in the same process
    (tests) starts from the same state.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
