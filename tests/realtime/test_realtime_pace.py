"""Delivery's pace (realtime/pace.py): at once while delivery keeps up, batched once behind.

The batching decision is a function of the backlogs the hub reports (tests without a database);
the hub reads a real database and the ringer rings a real PostgreSQL. The window itself is set by
hand where a test needs it on or off for certain: making a server process fall behind on purpose
would slow every other test beside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.support.api import api_client
from tests.support.fixtures import Database
from tests.support.seed import (
    C1,
    P1,
    insert_message,
    new_organisation_ids,
    purge_organisations,
    seed_organisation,
)
from vechat_rls import db
from vechat_rls.config import ConfigError, Settings
from vechat_rls.db import seal
from vechat_rls.identity import Identity, User
from vechat_rls.realtime.hub import Hub
from vechat_rls.realtime.outbox import Outbox
from vechat_rls.realtime.pace import AT_ONCE, BATCHING, Pacer
from vechat_rls.realtime.ringer import Ringer

PACE_S = 0.4


def test_no_backlog_never_batches_whatever_the_event_loop_lag() -> None:
    pacer = Pacer(PACE_S)
    for _ in range(50):
        time.sleep(0.002)  # the loop is late by all this: the pacer does not care
        pacer.observe(0)
        assert pacer.delay == 0
    # A backlog that shows up once and does not grow is no reason to wait either.
    for backlog in (1, 1, 0, 3, 2, 2, 1, 0):
        behind(pacer, backlog)
        assert pacer.delay == 0, backlog
    # Nor one that grows while every read still comes within a few ms of its doorbell.
    for backlog in range(1, 10):
        pacer.waited(0.002, backlog)
        pacer.observe(backlog)
        assert pacer.delay == 0, backlog


def behind(pacer: Pacer, backlog: int, source: object = None) -> None:
    """A read whose users waited 50 ms for it, and `backlog` users waiting after it."""
    pacer.waited(0.05, backlog)
    pacer.observe(backlog, source)


def test_a_growing_backlog_opens_a_window_that_grows_with_it_up_to_the_pace() -> None:
    pacer = Pacer(PACE_S, first_window_s=0.005)
    for backlog in (1, 2):
        behind(pacer, backlog)
        assert pacer.delay == 0, "users waiting after a read or two: not yet a growing backlog"
    windows = []
    for backlog in range(3, 20):
        behind(pacer, backlog)
        windows.append(pacer.delay)
    assert windows[0] == 0.005, "the first window is a few ms, not the whole pace"
    assert windows == sorted(windows), "it only grows while the backlog grows"
    assert windows[1] == 0.010 and windows[2] == 0.020, windows
    assert windows[-1] == PACE_S, "capped at the pace"
    assert 0.005 < windows[5] < PACE_S, "it grows step by step, not at once"


def test_a_steady_backlog_keeps_the_window_and_a_drained_one_closes_it_at_once() -> None:
    pacer = Pacer(PACE_S, first_window_s=0.005)
    for backlog in (2, 3, 4, 5):
        behind(pacer, backlog)
    window = pacer.delay
    assert window == 0.010
    for backlog in (4, 3, 4, 2, 4):
        behind(pacer, backlog)  # not growing: the window stays as it is
        assert pacer.delay == window
    pacer.observe(0)
    assert pacer.delay == 0, "drained: at once again"


def test_backlogs_of_several_hubs_add_up_and_a_stopped_hub_is_forgotten() -> None:
    pacer = Pacer(PACE_S, first_window_s=0.005)
    busy, idle = object(), object()
    for backlog in (1, 2, 3):
        behind(pacer, backlog, busy)
        pacer.observe(0, idle)  # one idle hub neither closes nor holds back a busy one's window
    assert pacer.delay == 0.005
    pacer.observe(0, idle)
    assert pacer.delay == 0.005
    pacer.forget(busy)
    pacer.observe(0, idle)
    assert pacer.delay == 0


def test_switches_log_at_info_and_only_late_deliveries_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="vechat_rls.realtime.pace")
    pacer = Pacer(PACE_S)
    for backlog in (1, 2, 3, 4, 0):
        behind(pacer, backlog)
    levels = {r.levelno for r in caplog.records}
    assert logging.WARNING not in levels
    assert any(BATCHING in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert any(AT_ONCE in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    caplog.clear()
    pacer.waited(pacer.late_after_s * 0.9, 5)
    assert not caplog.records, "within the bound: nothing to say"
    pacer.waited(pacer.late_after_s + 0.5, 5)
    pacer.waited(pacer.late_after_s + 0.5, 5)  # at most once a minute
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "late" in warnings[0].getMessage()
    assert pacer.late_after_s == max(1.0, 2 * PACE_S)


def test_a_pace_of_zero_never_batches() -> None:
    pacer = Pacer(0)
    for backlog in range(1, 30):
        behind(pacer, backlog)
    assert pacer.delay == 0


async def test_hold_waits_out_the_pace_only_while_it_is_on() -> None:
    pacer = Pacer(PACE_S)  # not started: the pace is set by hand
    began = time.monotonic()
    await pacer.hold(began)
    assert time.monotonic() - began < PACE_S / 2
    pacer.delay = PACE_S
    began = time.monotonic()
    await pacer.hold(began)
    assert time.monotonic() - began >= PACE_S * 0.9
    began = time.monotonic()
    await pacer.hold(began - PACE_S)  # the last read was a pace ago already
    assert time.monotonic() - began < PACE_S / 2


def test_the_pace_setting_is_validated() -> None:
    assert Settings.from_env({}).delivery_pace_ms == 1000
    assert Settings.from_env({"VECHAT_DELIVERY_PACE_MS": "0"}).delivery_pace_ms == 0
    for bad in ("-1", "10001"):
        with pytest.raises(ConfigError, match=r"VECHAT_DELIVERY_PACE_MS must be in 0\.\.10000"):
            Settings.from_env({"VECHAT_DELIVERY_PACE_MS": bad})


# ------------------------------------------------------------------------- with a database


@pytest.fixture(scope="module")
def conversation(migrated_database: Database) -> Iterator[tuple[int, int]]:
    """(organisation, conversation) of P1 and C1, seeded as the superuser."""
    organisation_id = new_organisation_ids(1)[0]
    with psycopg.connect(migrated_database.admin_url) as conn:
        seed = seed_organisation(conn, organisation_id)
    yield organisation_id, seed.conversation_id
    purge_organisations(migrated_database.admin_url, [organisation_id])


def send(database: Database, organisation_id: int, conversation_id: int) -> None:
    """P1 -> C1, one message, as the superuser acting as P1."""
    with psycopg.connect(database.admin_url) as conn:
        insert_message(conn, organisation_id, conversation_id, P1, C1, "paced")


def receiver(organisation_id: int) -> Identity:
    return Identity(organisation_id=organisation_id, user_type=C1.user_type, user_id=C1.user_id)


class CountingHub(Hub):
    """The real hub, recording when each of its reads starts."""

    reads: list[float]

    async def _read(self, wanted: list[tuple[User, int]]) -> None:
        self.reads.append(time.monotonic())
        await super()._read(wanted)


@pytest.fixture
async def hub_and_pacer(migrated_database: Database) -> AsyncIterator[tuple[CountingHub, Pacer]]:
    settings = Settings(database_url=migrated_database.app_url, pool_min=1, pool_max=2,
                        realtime_poll_s=60)
    database = db.Database(settings)
    await database.open()
    pacer = Pacer(PACE_S)  # not started: the pace is set by hand
    hub = CountingHub(database, settings, pacer)
    hub.reads = []
    hub.start()
    try:
        yield hub, pacer
    finally:
        await hub.stop()
        await database.close()


async def frames_until(outbox: Outbox, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len([f for f in frames if "seq" in f]) < count:
            frames.append(json.loads(await outbox.queue.get()))
    return frames


@pytest.mark.parametrize("paced", [False, True], ids=["at-once", "paced"])
async def test_a_paced_hub_reads_at_most_once_per_pace_and_still_delivers_each_event_once(
    migrated_database: Database,
    conversation: tuple[int, int],
    hub_and_pacer: tuple[CountingHub, Pacer],
    paced: bool,
) -> None:
    organisation_id, conversation_id = conversation
    hub, pacer = hub_and_pacer
    outbox = await hub.open(receiver(organisation_id), None)
    start = outbox.delivered
    assert json.loads(await outbox.queue.get())["type"] == "ready"
    pacer.delay = PACE_S if paced else 0.0
    pacer.observe = lambda _backlog, _source=None: None  # type: ignore[method-assign]  # by hand
    await asyncio.sleep(0.1)
    hub.reads.clear()
    rings = 6
    for _ in range(rings):  # a doorbell after each message, as the listener would ring it
        # In a thread: a blocked loop could not finish a hub transaction the insert waits for.
        await asyncio.to_thread(send, migrated_database, organisation_id, conversation_id)
        hub.mark_dirty(outbox.key)
        await asyncio.sleep(0.05)
    frames = await frames_until(outbox, rings)
    await asyncio.sleep(PACE_S * 1.5)  # a duplicate would be queued by now
    while not outbox.queue.empty():
        frames.append(json.loads(outbox.queue.get_nowait()))
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(start + 1, start + 1 + rings)), "each event once, in order"
    gaps = [b - a for a, b in zip(hub.reads, hub.reads[1:], strict=False)]
    if paced:
        # Six doorbells over ~0.3 s: one read at once, then at most one per pace.
        assert len(hub.reads) <= 3, hub.reads
        assert all(gap >= PACE_S * 0.9 for gap in gaps), gaps
    else:
        assert len(hub.reads) >= rings, hub.reads  # every doorbell read at once
    hub.close(outbox)


async def test_a_hub_on_a_lagging_event_loop_still_reads_every_doorbell_at_once(
    migrated_database: Database,
    conversation: tuple[int, int],
    hub_and_pacer: tuple[CountingHub, Pacer],
) -> None:
    """The cliff of issue 16: the loop was late on average (a busy host), nothing queued up, and
    the old pacer batched a second at a time. Now only a growing backlog batches."""
    organisation_id, conversation_id = conversation
    hub, pacer = hub_and_pacer
    outbox = await hub.open(receiver(organisation_id), None)
    start = outbox.delivered
    assert json.loads(await outbox.queue.get())["type"] == "ready"
    await asyncio.sleep(0.1)
    hub.reads.clear()
    rings = 5
    for _ in range(rings):
        await asyncio.to_thread(send, migrated_database, organisation_id, conversation_id)
        rung = time.monotonic()
        hub.mark_dirty(outbox.key)
        for _ in range(3):
            time.sleep(0.01)  # the loop wakes late, as on a host shared with PostgreSQL
            await asyncio.sleep(0)
        frames = await frames_until(outbox, 1)
        assert time.monotonic() - rung < PACE_S / 2, "delivered at once"
        assert [f["seq"] for f in frames if "seq" in f] == [start + 1]
        start += 1
        assert pacer.delay == 0
    assert len(hub.reads) >= rings
    hub.close(outbox)


async def test_a_paced_ringer_rings_at_most_once_per_pace_naming_every_recipient(
    migrated_database: Database,
) -> None:
    heard: list[dict[str, Any]] = []
    organisation_id = new_organisation_ids(1)[0]

    def on_notify(_conn: object, _pid: int, _channel: str, text: str) -> None:
        notice = seal.open_("vechat_events", text)  # sealed: the suite has the key
        if isinstance(notice, dict) and notice["o"] == organisation_id:
            heard.append(notice)

    listener = await asyncpg.connect(migrated_database.admin_url)
    await listener.add_listener("vechat_events", on_notify)
    pacer = Pacer(PACE_S)  # not started: the pace is set by hand
    ringer = Ringer(migrated_database.admin_url, 0.002, pacer)
    ringer.start()
    try:
        pacer.delay = PACE_S
        began = time.monotonic()
        for user_id in range(1, 21):  # 20 commits over ~1 s
            ringer.ring(organisation_id, frozenset({("client", user_id)}))
            await asyncio.sleep(0.05)
        await asyncio.sleep(PACE_S * 1.5)
        elapsed = time.monotonic() - began
        named = {(t, i) for notice in heard for t, i, _seq in notice["e"]}
        assert named == {("client", i) for i in range(1, 21)}, "every recipient rung"
        assert len(heard) <= elapsed / PACE_S + 2, (len(heard), elapsed)
        assert ringer.rings <= elapsed / PACE_S + 2

        pacer.delay = 0.0
        heard.clear()
        await asyncio.sleep(0.1)
        for user_id in range(1, 6):  # idle again: each ring goes at once
            ringer.ring(organisation_id, frozenset({("client", user_id)}))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        assert len(heard) == 5, heard
    finally:
        await ringer.stop()
        await listener.close()


async def test_the_hub_stops_when_a_socket_closed_just_before(
    conversation: tuple[int, int], hub_and_pacer: tuple[CountingHub, Pacer]
) -> None:
    """A socket closing wakes the lease task just as stop() cancels it (stop() drops sockets
    itself): Python 3.11's asyncio.wait_for swallowed that cancellation, and stop() waited for a
    task that went on renewing leases for ever."""
    organisation_id, _conversation_id = conversation
    hub, _pacer = hub_and_pacer
    outbox = await hub.open(receiver(organisation_id), None)
    await asyncio.sleep(0.2)  # the lease is written; the lease task waits for the next change
    hub.close(outbox)
    began = time.monotonic()
    stopping = asyncio.ensure_future(hub.stop())
    done, _pending = await asyncio.wait({stopping}, timeout=5)
    if not done:
        stopping.cancel()  # stop() itself survives a cancel; the fixture's teardown retries
    assert done, "stop() is still waiting for the hub's tasks"
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("pace_ms", [250, 0])
async def test_the_app_paces_its_hub_and_ringer_with_one_pacer_of_the_setting(
    migrated_database: Database, pace_ms: int
) -> None:
    async with api_client(migrated_database, delivery_pace_ms=pace_ms) as client:
        state = client.app.state
        pacer = state.hub.pacer
        assert isinstance(pacer, Pacer)
        assert pacer.pace_s == pace_ms / 1000
        assert state.ringer.pacer is pacer
