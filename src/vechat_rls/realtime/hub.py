"""The hub: this process's sockets by user, and exactly-once delivery of their events.

Something says a recipient may have new events — an events doorbell, the listener reconnecting
(everyone), a socket connecting (its user), the safety-net poll — and the hub marks them dirty.
One worker reads every dirty user's events per wake-up, in one statement whatever their
organisation (realtime/events.py), and queues each socket exactly the seqs after the last one
it was given, in order; a gap (events pruned under a live socket) resets the socket. Its parts:
presence leases (leases.py), presence frames (presence_frames.py), typing_indicators.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.db import seal
from vechat_rls.identity import Identity, User
from vechat_rls.realtime.events import Frame, encode, read_frames
from vechat_rls.realtime.leases import Leases
from vechat_rls.realtime.listener import EVENTS_CHANNEL, PRESENCE_CHANNEL, TYPING_CHANNEL
from vechat_rls.realtime.outbox import CLOSE_TRY_AGAIN, Outbox
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.presence_frames import PresenceFrames
from vechat_rls.realtime.sockets import Sockets
from vechat_rls.realtime.tasks import stop_task
from vechat_rls.realtime.typing_indicators import Typing

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after a failed read, dirty users are tried again this much later
READ_CHUNK = 500  # users per read statement (a wake-up with more reads in parallel chunks)


Positive = Annotated[int, msgspec.Meta(gt=0)]


class _EventsNotice(msgspec.Struct, frozen=True):
    o: Positive
    e: list[tuple[Literal["personnel", "client"], Positive, Annotated[int, msgspec.Meta(ge=0)]]]


# visibility: vechat_event_cursors_select_organisation (db/policies/vechat_event_cursors.sql) —
# counters of the transaction's organisation; the user list is this process's connected users.
CURSORS_SQL = """
SELECT c.user_type, c.user_id, c.last_seq
FROM public.vechat_event_cursors c
JOIN unnest($1::text[], $2::bigint[]) AS u(user_type, user_id)
  ON c.user_type = u.user_type AND c.user_id = u.user_id
"""

# Retention first (the caller's own events, vechat.prune_own_events), then where the log stands.
# visibility: vechat_event_cursors_select_organisation — the caller's own counter.
CONNECT_SQL = """
SELECT vechat.prune_own_events($1) AS pruned_seq,
       coalesce((SELECT c.last_seq FROM public.vechat_event_cursors c
                 WHERE c.user_type = $2 AND c.user_id = $3), 0) AS last_seq
"""


class Hub:
    """Routes events, presence and typing to this process's sockets (see the module docstring).

    Each socket has its own sender task and an outbox bounded by `VECHAT_WS_QUEUE_LIMIT`: one
    slow socket never delays the others. Durable events are never dropped: a socket that falls
    behind is paced from the event log. One that makes no progress for
    `VECHAT_WS_SEND_TIMEOUT_S` is dropped (1013) by a watchdog; the client resumes with `since`.
    """

    def __init__(
        self, database: db.Database, settings: Settings, pacer: Pacer | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.pacer = pacer or Pacer(0)  # none given: every wake-up reads at once
        self.sockets = Sockets(lambda user, identity: self.leases.changed(user, identity))
        self.leases = Leases(database, settings, self.sockets)
        self._reads = asyncio.Semaphore(max(1, settings.pool_max // 2))
        self.presence = PresenceFrames(database, self.sockets, self._reads)
        self.typing = Typing(self.sockets)
        self._dirty: dict[int, dict[User, int]] = defaultdict(dict)
        self._rung: set[int] = set()  # organisations rung without recipients named
        self._waiting_since: float | None = None  # when the oldest user still unread was marked
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------------ life cycle

    def notification_handlers(self) -> dict[str, Callable[[Any], None]]:
        """What the listener hands each channel's notifications to."""
        return {
            EVENTS_CHANNEL: self.on_events,
            PRESENCE_CHANNEL: self.presence.on_notice,
            TYPING_CHANNEL: self.typing.on_notice,
        }

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, job in (
            ("deliver", self._deliver_loop),
            ("presence", self.presence.run),
            ("leases", self.leases.run),
            ("poll", self._poll_loop),
            ("stalls", self._stall_loop),
        ):
            self._tasks.append(loop.create_task(job(), name=f"vechat-hub-{name}"))

    async def stop(self) -> None:
        """Drop every socket (1012: the service restarts) and give up this process's leases."""
        self.leases.stopping = True
        for outbox in self.sockets.outboxes():
            outbox.drop(1012)
            self.sockets.remove(outbox)
        await asyncio.gather(*(stop_task(task) for task in self._tasks))
        self._tasks.clear()
        self.pacer.forget(self)
        self.typing.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.flush(), timeout=5)

    # ------------------------------------------------------------------------------ sockets

    async def open(self, identity: Identity, since: int | None) -> Outbox:
        """Register a socket; its outbox then gets the replay since `since`, then `ready`.

        Raises `db.DatabaseUnavailable` (and database errors) when the database cannot say where
        the user's log stands; nothing is registered then.
        """
        async with db.tenant(self.database, identity.bare(), appends_events=False) as conn:
            row = await conn.fetchrow(
                CONNECT_SQL, self.settings.event_retention_s, identity.user_type, identity.user_id
            )
        assert row is not None
        pruned_seq, last_seq = int(row["pruned_seq"]), int(row["last_seq"])
        outbox = Outbox(identity, self.settings.ws_queue_limit)
        outbox.on_resume = self._resume
        if since is None:
            outbox.delivered = last_seq
        elif since < pruned_seq or since > last_seq:
            # Older than the retention (or from a log this user does not have): refetch over HTTP.
            outbox.push(encode(Frame("reset")))
            outbox.delivered = last_seq
        else:
            outbox.delivered = since
        key = outbox.key
        self.sockets.add(outbox)
        if outbox.delivered < last_seq:
            # The replay is an ordinary read (paced like any other); `ready` follows its end.
            outbox.ready_at = last_seq
        else:
            outbox.ready()
        # Read once in any case: a doorbell rung between CONNECT_SQL and the registration above
        # found no socket here.
        self.mark_dirty(key)
        return outbox

    def _resume(self, outbox: Outbox) -> None:
        if outbox.key in self.sockets.users:
            self.mark_dirty(outbox.key)

    def close(self, outbox: Outbox) -> None:
        """The socket is gone (or being closed): stop routing to it."""
        outbox.drop(outbox.close_code or 1000)
        self.sockets.remove(outbox)

    def send(self, outbox: Outbox, frame: Frame) -> None:
        """A reply to one socket (pong, ack, error), in line with its events."""
        outbox.push(encode(frame))

    # ------------------------------------------------------------------------------ doorbells

    def on_events(self, payload: Any) -> None:
        """`vechat_events` (opened, db/seal.py): mark the recipients this process serves
        dirty; a doorbell the database rang (writes from outside the API) names no one: every
        local user is read, each skipped by one index lookup when nothing is new."""
        if payload is seal.DOORBELL:
            self._rung.update(self.sockets.by_org)
            self._wake.set()
            return
        notice = msgspec.convert(payload, type=_EventsNotice)
        # Routing, not visibility: the events are read back under each recipient's own context.
        local = self.sockets.by_org.get(notice.o)
        if not local:
            return
        if not notice.e:
            # A ring that names no one: every local user of the organisation, expanded once per
            # wake-up however many rings arrive meanwhile.
            self._rung.add(notice.o)
            self._wake_up()
            return
        for user_type, user_id, seq in notice.e:
            key = User(notice.o, user_type, user_id)
            if key in local:
                self.mark_dirty(key, seq)

    def mark_dirty(self, key: User, seq: int = 0) -> None:
        """`key` may have events up to `seq` (0: unknown, read whatever is there)."""
        pending = self._dirty[key.organisation_id]
        known = pending.get(key, seq)
        # "Unknown" wins: a catch-up must read even when a doorbell for an older seq came too.
        pending[key] = max(known, seq) if known and seq else 0
        self._wake_up()

    def _wake_up(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._wake.set()

    def backlog(self) -> int:
        """Users waiting for the next read (each local user of a rung organisation counted)."""
        return sum(len(keys) for keys in self._dirty.values()) + sum(
            len(self.sockets.by_org.get(organisation_id, ())) for organisation_id in self._rung
        )

    async def catch_up_all(self) -> None:
        """After the listener (re)connects: anything rung while it was away is in the log."""
        for key in list(self.sockets.users):
            self.mark_dirty(key)

    async def _deliver_loop(self) -> None:
        last_read = 0.0
        while True:
            await self._wake.wait()
            await self.pacer.hold(last_read)  # falling behind: batch (realtime/pace.py)
            last_read = time.monotonic()
            self._wake.clear()
            if self._waiting_since is not None:
                self.pacer.waited(last_read - self._waiting_since, self.backlog())
                self._waiting_since = None
            dirty, self._dirty = self._dirty, defaultdict(dict)
            rung, self._rung = self._rung, set()
            for organisation_id in rung:
                pending = dirty[organisation_id]
                for key in self.sockets.by_org.get(organisation_id, ()):
                    pending[key] = 0  # unknown: read whatever the cursor says is there
            wanted: list[tuple[User, int]] = []
            for keys in dirty.values():
                for key, seq in keys.items():
                    taking = self._taking(key)
                    if not taking:
                        continue  # gone, or every socket lagging (read again when it drains)
                    since = min(o.delivered for o in taking)
                    if seq and since >= seq:
                        continue  # delivered already (a replay or an earlier read got there)
                    wanted.append((key, since))
            chunks = [wanted[i : i + READ_CHUNK] for i in range(0, len(wanted), READ_CHUNK)]
            results = await asyncio.gather(
                *(self._read(chunk) for chunk in chunks), return_exceptions=True
            )
            _log_failures("delivery", results)
            # Who came in while this read ran: nobody means delivery keeps up.
            self.pacer.observe(self.backlog(), self)

    async def _read(self, wanted: list[tuple[User, int]]) -> None:
        """Read and deliver the events of `wanted` users (any organisations): one statement."""
        try:
            async with self._reads:
                frames, more = await read_frames(
                    self.database, wanted, self.settings.ws_queue_limit
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "realtime: reading events of %s users failed (%s); retrying",
                len(wanted),
                type(exc).__name__,
            )
            self._retry_later({key: 0 for key, _since in wanted})
            return
        for key, _since in wanted:
            self._deliver(key, frames.get(key, []))
        for key in more:
            self.mark_dirty(key)

    def _taking(self, key: User) -> list[Outbox]:
        user = self.sockets.users.get(key)
        return [o for o in user.outboxes if not o.lagging] if user else []

    def _retry_later(self, keys: dict[User, int]) -> None:
        def again() -> None:
            for key, seq in keys.items():
                if key in self.sockets.users:
                    self.mark_dirty(key, seq)

        asyncio.get_running_loop().call_later(RETRY_S, again)

    def _deliver(self, key: User, frames: list[tuple[int, str]]) -> None:
        for outbox in self._taking(key):
            for seq, text in frames:
                if seq <= outbox.delivered:
                    continue
                if seq != outbox.delivered + 1:
                    # Events under a live socket are gone (retention): it must refetch.
                    log.warning("realtime: gap before seq %s for a socket; sending reset", seq)
                    outbox.push(encode(Frame("reset")))
                    outbox.delivered = seq - 1
                if not outbox.push_event(seq, text):
                    break  # lagging: read again once it has drained
            if outbox.ready_at is not None and not frames and not outbox.lagging:
                # Nothing left to replay although the log said there was: pruned meanwhile.
                outbox.push(encode(Frame("reset")))
                outbox.delivered = outbox.ready_at
                outbox.ready()
            if outbox.closed.is_set():
                self.sockets.remove(outbox)

    # ------------------------------------------------------------------------------ safety net

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.realtime_poll_s)
            results = await asyncio.gather(
                *(self._poll_org(org) for org in list(self.sockets.by_org)),
                return_exceptions=True,
            )
            _log_failures("poll", results)

    async def _poll_org(self, organisation_id: int) -> None:
        """Catch up users whose cursor is ahead of what they got; sweep dead leases."""
        keys = list(self.sockets.by_org.get(organisation_id, ()))
        if not keys:
            return
        try:
            async with (
                self._reads,
                db.tenant(self.database, keys[0].acting(), appends_events=False) as conn,
            ):
                rows = await conn.fetch(
                    CURSORS_SQL, [k.user_type for k in keys], [k.user_id for k in keys]
                )
                await self.leases.sweep(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "realtime: poll of organisation %s failed (%s)", organisation_id, type(exc).__name__
            )
            return
        for row in rows:
            key = User(organisation_id, row["user_type"], row["user_id"])
            taking = self._taking(key)
            if taking and row["last_seq"] > min(o.delivered for o in taking):
                self.mark_dirty(key, row["last_seq"])

    async def _stall_loop(self) -> None:
        """Drop (1013) every socket whose peer has not taken a frame for `ws_send_timeout_s`.

        One watchdog for all sockets, rather than a timer per frame sent (asyncio.wait_for costs
        a task per frame): a stalled socket is closed within 1.25 x the timeout.
        """
        timeout = self.settings.ws_send_timeout_s
        while True:
            await asyncio.sleep(timeout / 4)
            now = time.monotonic()
            for outbox in self.sockets.outboxes():
                if outbox.stalled(now, timeout):
                    outbox.drop(CLOSE_TRY_AGAIN)
                    self.sockets.remove(outbox)


def _log_failures(what: str, results: list[Any]) -> None:
    """A bug in one organisation's work must not stop the loop that serves all of them."""
    for result in results:
        if isinstance(result, Exception):
            log.error("realtime: %s failed", what, exc_info=result)

