"""The hub: this process's sockets by user, exactly-once delivery, presence leases and typing.

Delivery. The hub relies on one thing only: *something says that a recipient may have new events*
— a doorbell notification `{"o": org, "e": [[user_type, user_id, seq], …]}`, the listener
reconnecting (every user), a socket connecting (its user), or the safety-net poll finding a
cursor ahead of what was delivered. The ringer (realtime/ringer.py, the default doorbell mode)
names the recipients with seq 0 ("read whatever is there") when the writers named them,
else only the organisation, `{"o": org, "e": []}`: that marks every local user of the
organisation, and the read skips those whose cursor shows nothing new. Doorbells only mark users
dirty; one worker drains the dirty set per wake-up and reads every dirty user's events, whatever
their organisation, in one statement (`realtime/events.py`, each under the recipient's own
context; `READ_CHUNK` users per statement), so a burst of doorbells costs one read per wake-up,
not one per event or organisation.

Exactly once, in order. Every socket remembers the last seq put on its queue (`delivered`); a user's
events are read from the smallest `delivered` of their sockets, and each socket takes only
`delivered + 1, + 2, …`: duplicates (two doorbells, a replay racing a doorbell) are dropped, and a
gap — events deleted by retention under a live socket — resets that socket (`{"type": "reset"}`).
Seqs become visible in order (a writer takes the next seq under the recipient's cursor row lock),
so reading `seq > delivered` never skips one that commits later.

Backpressure. Each socket has its own sender task and a queue bounded by `VECHAT_WS_QUEUE_LIMIT`
frames, so one slow socket never delays the others and memory per socket is bounded. Durable
events are never dropped and never force a disconnect: the event log is the buffer. A socket
whose queue is full stops taking events ("lagging") and, once it has sent half its queue, is read
again from its own `delivered` — a slow reader, or a large replay, is paced from the log. A
socket that makes no progress at all (one frame unsent for `VECHAT_WS_SEND_TIMEOUT_S`), or whose
ephemeral frames (typing, presence, replies) pile up beyond the queue, is dropped from the hub and
closed 1013 (a watchdog looks every quarter of the timeout); the client resumes with `since`.

Presence. The process holds, per user with sockets here, one lease row in
`vechat_presence_connections` (server_id = this process): written when a user's local socket count
changes and renewed for all users every third of `VECHAT_PRESENCE_LEASE_S`, in one call per
organisation (`vechat.set_leases`). The same call rings `vechat_presence` (ids only) when a user
came online or went offline anywhere. Every `VECHAT_REALTIME_POLL_S` the process also sweeps the
expired leases of the organisations it serves (`vechat.sweep_leases`): a process killed with -9
stops renewing, its leases expire, and whoever sweeps first rings offline. A presence
notification makes each process that has sockets in that organisation read, acting as the user
whose presence changed, their conversation peers and `vechat.presence_view` (which honours
`show_online_status`), and send a `presence` frame to the peers connected here.

Typing. A `typing` frame is checked under the sender's context (only a participant finds the
conversation) and rung on `vechat_typing` with ids only, in the same statement; the process holding
the peer's sockets sends the frame and, unless it is refreshed, `is_typing: false` after 5 s.

NOTIFY payloads are hints: anyone who may connect may NOTIFY. Events and presence are read back
under row-level security whatever the payload says; a forged typing hint can at worst show a
typing indicator between two users of one organisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.identity import USER_TYPES, Identity, User
from vechat_rls.realtime.events import Frame, encode, read_frames
from vechat_rls.realtime.listener import EVENTS_CHANNEL, PRESENCE_CHANNEL, TYPING_CHANNEL
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.tasks import stop_task

log = logging.getLogger(__name__)

TYPING_TTL_S = 5.0
EPHEMERAL_SLACK = 64  # frames without a seq a full queue still takes before the socket is dropped
TYPING_REFRESH_MIN_S = 1.0  # a client repeating "typing" faster than this rings nothing new
RETRY_S = 1.0  # after a failed read, dirty users are tried again this much later
CLOSE_TRY_AGAIN = 1013
READ_CHUNK = 500  # users per read statement (a wake-up with more reads in parallel chunks)


def server_id() -> str:
    """This process's name in the lease table: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Outbox:
    """One socket's side of the hub: its bounded queue of frames and the last seq put on it."""

    def __init__(self, identity: Identity, limit: int) -> None:
        self.identity = identity
        self.key = identity.user
        self.limit = limit
        self.queue: asyncio.Queue[str] = asyncio.Queue()  # bounded by push/push_event
        self.delivered = 0  # the last seq queued
        self.ready_at: int | None = None  # send `ready` once `delivered` reaches it
        self.lagging = False  # full: takes no events until it has sent half its queue
        self.on_resume: Callable[[Outbox], None] | None = None
        self.closed = asyncio.Event()  # set when the hub has dropped this socket
        self.close_code: int | None = None
        self.sending_since: float | None = None  # monotonic start of the frame being written

    def stalled(self, now: float, timeout: float) -> bool:
        """One frame has been on its way to the peer for `timeout` seconds or more."""
        return self.sending_since is not None and now - self.sending_since >= timeout

    def push_event(self, seq: int, text: str) -> bool:
        """Queue the event `seq` (the next one); False when the queue is full (lagging now)."""
        if self.closed.is_set() or self.lagging:
            return False
        if self.queue.qsize() >= self.limit:
            self.lagging = True
            return False
        self.queue.put_nowait(text)
        self.delivered = seq
        if self.ready_at is not None and seq >= self.ready_at:
            self.ready()
        return True

    def ready(self) -> None:
        self.ready_at = None
        self.push(encode(Frame("ready", {"seq": self.delivered})))

    def push(self, text: str) -> bool:
        """Queue a frame without a seq; a socket this far behind is dropped (1013)."""
        if self.closed.is_set():
            return False
        if self.queue.qsize() >= self.limit + EPHEMERAL_SLACK:
            self.drop(CLOSE_TRY_AGAIN)
            return False
        self.queue.put_nowait(text)
        return True

    async def next_frame(self) -> str:
        """The next frame to send (the socket's sender task)."""
        text = await self.queue.get()
        if self.lagging and self.queue.qsize() <= self.limit // 2:
            self.lagging = False
            if self.on_resume is not None:
                self.on_resume(self)
        return text

    def drop(self, code: int) -> None:
        if not self.closed.is_set():
            self.close_code = code
            self.closed.set()
            # The frames waiting here will never be sent; free them now, not when the peer reads.
            self.queue = asyncio.Queue()


@dataclass
class _User:
    identity: Identity
    outboxes: set[Outbox] = field(default_factory=set)


class _TypingNotice(msgspec.Struct, frozen=True):
    o: int
    c: int
    f: tuple[str, int]
    t: tuple[str, int]
    y: bool


class _PresenceNotice(msgspec.Struct, frozen=True):
    o: int
    u: tuple[str, int]


class _EventsNotice(msgspec.Struct, frozen=True):
    o: int
    e: list[tuple[str, int, int]]


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

SET_LEASES_SQL = "SELECT * FROM vechat.set_leases($1, $2, $3::jsonb)"
SWEEP_LEASES_SQL = "SELECT * FROM vechat.sweep_leases()"

# The changed user's peers (everyone they share a conversation with) and their presence as others
# see it. Runs acting as that user.
# visibility: vechat_conversations_select_participant (db/policies/vechat_conversations.sql) —
# the user's own conversations; vechat.presence_view (db/schema/18_presence_view.sql) honours
# show_online_status.
PRESENCE_SQL = """
SELECT v.status, v.last_seen,
       ARRAY(SELECT DISTINCT CASE WHEN c.participant1_id = $1 AND c.participant1_type = $2
                                  THEN c.participant2_type ELSE c.participant1_type END
                             || ':' ||
                             CASE WHEN c.participant1_id = $1 AND c.participant1_type = $2
                                  THEN c.participant2_id ELSE c.participant1_id END
             FROM public.vechat_conversations c) AS peers
FROM (SELECT 1) AS one
LEFT JOIN vechat.presence_view v ON v.user_id = $1 AND v.user_type = $2
"""

# The typing hint, rung only when the caller takes part in the conversation; one statement.
# visibility: vechat_conversations_select_participant — a non-participant finds no row.
TYPING_SQL = """
SELECT pg_catalog.pg_notify('vechat_typing', json_build_object(
           'o', c.organisation_id, 'c', c.id,
           'f', json_build_array($2::text, $3::bigint),
           't', CASE WHEN c.participant1_id = $3 AND c.participant1_type = $2
                     THEN json_build_array(c.participant2_type, c.participant2_id)
                     ELSE json_build_array(c.participant1_type, c.participant1_id) END,
           'y', $4::boolean)::text)
FROM public.vechat_conversations c
WHERE c.id = $1
"""

class Hub:
    """Routes events, presence and typing to this process's sockets (see the module docstring)."""

    def __init__(
        self, database: db.Database, settings: Settings, pacer: Pacer | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.pacer = pacer or Pacer(0)  # none given: every wake-up reads at once
        self.server_id = server_id()
        self.users: dict[User, _User] = {}
        self.by_org: dict[int, set[User]] = defaultdict(set)
        self._dirty: dict[int, dict[User, int]] = defaultdict(dict)
        self._rung: set[int] = set()  # organisations rung without recipients named
        self._wake = asyncio.Event()
        self._presence_dirty: dict[int, set[tuple[str, int]]] = defaultdict(set)
        self._presence_wake = asyncio.Event()
        self._lease_dirty: dict[User, Identity] = {}
        self._lease_wake = asyncio.Event()
        self._typing_timers: dict[tuple[User, int, tuple[str, int]], asyncio.TimerHandle] = {}
        self._typing_sent: dict[tuple[User, int], tuple[bool, float]] = {}
        self._reads = asyncio.Semaphore(max(1, settings.pool_max // 2))
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ------------------------------------------------------------------------------ life cycle

    def notification_handlers(self) -> dict[str, Callable[[str], None]]:
        """What the listener hands each channel's notifications to."""
        return {
            EVENTS_CHANNEL: self.on_events,
            PRESENCE_CHANNEL: self.on_presence,
            TYPING_CHANNEL: self.on_typing,
        }

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, job in (
            ("deliver", self._deliver_loop),
            ("presence", self._presence_loop),
            ("leases", self._lease_loop),
            ("poll", self._poll_loop),
            ("stalls", self._stall_loop),
        ):
            self._tasks.append(loop.create_task(job(), name=f"vechat-hub-{name}"))

    async def stop(self) -> None:
        """Drop every socket (1012: the service restarts) and give up this process's leases."""
        self._stopping = True
        for user in list(self.users.values()):
            for outbox in list(user.outboxes):
                outbox.drop(1012)
                self._forget(outbox)
        await asyncio.gather(*(stop_task(task) for task in self._tasks))
        self._tasks.clear()
        for timer in self._typing_timers.values():
            timer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush_leases(), timeout=5)

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
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = _User(identity)
            self.by_org[key.organisation_id].add(key)
        user.outboxes.add(outbox)
        self._lease_changed(key, identity)
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
        if outbox.key in self.users:
            self.mark_dirty(outbox.key)

    def close(self, outbox: Outbox) -> None:
        """The socket is gone (or being closed): stop routing to it."""
        outbox.drop(outbox.close_code or 1000)
        self._forget(outbox)

    def _forget(self, outbox: Outbox) -> None:
        user = self.users.get(outbox.key)
        if user is None or outbox not in user.outboxes:
            return
        user.outboxes.discard(outbox)
        if not user.outboxes:
            del self.users[outbox.key]
            org_users = self.by_org.get(outbox.key.organisation_id)
            if org_users is not None:
                org_users.discard(outbox.key)
                if not org_users:
                    del self.by_org[outbox.key.organisation_id]
        self._lease_changed(outbox.key, outbox.identity)

    def send(self, outbox: Outbox, frame: Frame) -> None:
        """A reply to one socket (pong, ack, error), in line with its events."""
        outbox.push(encode(frame))

    # ------------------------------------------------------------------------------ doorbells

    def on_events(self, payload: str) -> None:
        """`vechat_events`: mark the recipients this process serves dirty."""
        notice = msgspec.json.decode(payload, type=_EventsNotice)
        # Routing, not visibility: the events are read back under each recipient's own context.
        local = self.by_org.get(notice.o)
        if not local:
            return
        if not notice.e:
            # A ring that names no one: every local user of the organisation, expanded once per
            # wake-up however many rings arrive meanwhile.
            self._rung.add(notice.o)
            self._wake.set()
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
        self._wake.set()

    async def catch_up_all(self) -> None:
        """After the listener (re)connects: anything rung while it was away is in the log."""
        for key in list(self.users):
            self.mark_dirty(key)

    async def _deliver_loop(self) -> None:
        last_read = 0.0
        while True:
            await self._wake.wait()
            await self.pacer.hold(last_read)  # short of CPU: batch (realtime/pace.py)
            last_read = time.monotonic()
            self._wake.clear()
            dirty, self._dirty = self._dirty, defaultdict(dict)
            rung, self._rung = self._rung, set()
            for organisation_id in rung:
                pending = dirty[organisation_id]
                for key in self.by_org.get(organisation_id, ()):
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
        user = self.users.get(key)
        return [o for o in user.outboxes if not o.lagging] if user else []

    def _retry_later(self, keys: dict[User, int]) -> None:
        def again() -> None:
            for key, seq in keys.items():
                if key in self.users:
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
                self._forget(outbox)

    # ------------------------------------------------------------------------------ safety net

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.realtime_poll_s)
            results = await asyncio.gather(
                *(self._poll_org(org) for org in list(self.by_org)), return_exceptions=True
            )
            _log_failures("poll", results)

    async def _poll_org(self, organisation_id: int) -> None:
        """Catch up users whose cursor is ahead of what they got; sweep dead leases."""
        keys = list(self.by_org.get(organisation_id, ()))
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
                await conn.fetch(SWEEP_LEASES_SQL)
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
            for user in list(self.users.values()):
                for outbox in list(user.outboxes):
                    if outbox.stalled(now, timeout):
                        outbox.drop(CLOSE_TRY_AGAIN)
                        self._forget(outbox)

    # ------------------------------------------------------------------------------ leases

    def _lease_changed(self, key: User, identity: Identity) -> None:
        self._lease_dirty[key] = identity
        self._lease_wake.set()

    async def _lease_loop(self) -> None:
        renew_every = self.settings.presence_lease_s / 3
        next_renewal = time.monotonic() + renew_every
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the event is set, and stop() sets it (sockets dropped) before cancelling.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_renewal - time.monotonic())):
                    await self._lease_wake.wait()
            self._lease_wake.clear()
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + renew_every
                for key, user in self.users.items():
                    self._lease_dirty.setdefault(key, user.identity)
            try:
                await self._flush_leases()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime: lease update failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                self._lease_wake.set()

    async def _flush_leases(self) -> None:
        """Write the leases of every user whose local socket count changed (or is due renewal)."""
        dirty, self._lease_dirty = self._lease_dirty, {}
        by_org: dict[int, dict[User, Identity]] = defaultdict(dict)
        for key, identity in dirty.items():
            by_org[key.organisation_id][key] = identity
        try:
            for organisation_id in list(by_org):
                users = by_org[organisation_id]
                leases = []
                for key in users:
                    user = self.users.get(key)
                    count = 0 if (self._stopping or user is None) else len(user.outboxes)
                    leases.append([key.user_type, key.user_id, count])
                acting = next(iter(users.values())).bare()
                async with db.tenant(self.database, acting, appends_events=False) as conn:
                    await conn.fetch(
                        SET_LEASES_SQL, self.server_id, self.settings.presence_lease_s, leases
                    )
                del by_org[organisation_id]
        finally:
            # Whatever was not written is written next time (a newer change wins).
            for users in by_org.values():
                for key, identity in users.items():
                    self._lease_dirty.setdefault(key, identity)

    # ------------------------------------------------------------------------------ presence

    def on_presence(self, payload: str) -> None:
        notice = msgspec.json.decode(payload, type=_PresenceNotice)
        if notice.o in self.by_org and notice.u[0] in USER_TYPES:
            self._presence_dirty[notice.o].add(notice.u)
            self._presence_wake.set()

    async def _presence_loop(self) -> None:
        while True:
            await self._presence_wake.wait()
            self._presence_wake.clear()
            dirty, self._presence_dirty = self._presence_dirty, defaultdict(set)
            for organisation_id, users in dirty.items():
                for user_type, user_id in sorted(users):
                    try:
                        await self._send_presence(User(organisation_id, user_type, user_id))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("realtime: presence frame failed (%s)", type(exc).__name__)

    async def _send_presence(self, key: User) -> None:
        if key.organisation_id not in self.by_org:
            return
        async with (
            self._reads,
            db.tenant(self.database, key.acting(), readonly=True) as conn,
        ):
            row = await conn.fetchrow(PRESENCE_SQL, key.user_id, key.user_type)
        assert row is not None
        last_seen: datetime | None = row["last_seen"]
        frame = encode(
            Frame(
                "presence",
                {
                    "user_id": key.user_id,
                    "user_type": key.user_type,
                    "status": row["status"] or "offline",
                    "last_seen": last_seen,
                },
            )
        )
        for peer in row["peers"]:
            peer_type, _, peer_id = peer.partition(":")
            self._push_user(User(key.organisation_id, peer_type, int(peer_id)), frame)

    # ------------------------------------------------------------------------------ typing

    async def typing(
        self, conn: db.Transaction, identity: Identity, conversation_id: int, is_typing: bool
    ) -> bool:
        """Ring the peer's typing indicator; False when the caller is not in the conversation."""
        throttle = (identity.user, conversation_id)
        now = time.monotonic()
        last = self._typing_sent.get(throttle)
        if last is not None and last[0] == is_typing and now - last[1] < TYPING_REFRESH_MIN_S:
            return True
        rung = await conn.fetch(
            TYPING_SQL, conversation_id, identity.user_type, identity.user_id, is_typing
        )
        if not rung:
            return False
        self._typing_sent[throttle] = (is_typing, now)
        if len(self._typing_sent) > 10_000:
            self._typing_sent.clear()
        return True

    def on_typing(self, payload: str) -> None:
        notice = msgspec.json.decode(payload, type=_TypingNotice)
        to = User(notice.o, notice.t[0], notice.t[1])
        if to not in self.users:
            return
        timer_key = (to, notice.c, notice.f)
        timer = self._typing_timers.pop(timer_key, None)
        if timer is not None:
            timer.cancel()
        self._push_typing(to, notice.c, notice.f, notice.y)
        if notice.y:
            self._typing_timers[timer_key] = asyncio.get_running_loop().call_later(
                TYPING_TTL_S, self._typing_expired, timer_key
            )

    def _typing_expired(self, timer_key: tuple[User, int, tuple[str, int]]) -> None:
        self._typing_timers.pop(timer_key, None)
        to, conversation_id, sender = timer_key
        self._push_typing(to, conversation_id, sender, False)

    def _push_typing(
        self, to: User, conversation_id: int, sender: tuple[str, int], is_typing: bool
    ) -> None:
        frame = Frame(
            "typing",
            {
                "conversation_id": conversation_id,
                "user": {"user_id": sender[1], "user_type": sender[0]},
                "is_typing": is_typing,
            },
        )
        self._push_user(to, encode(frame))

    def _push_user(self, key: User, text: str) -> None:
        user = self.users.get(key)
        if user is None:
            return
        for outbox in list(user.outboxes):
            if not outbox.push(text):
                self._forget(outbox)

    # ------------------------------------------------------------------------------ inspection

    def sockets(self) -> int:
        return sum(len(u.outboxes) for u in self.users.values())


def _log_failures(what: str, results: list[Any]) -> None:
    """A bug in one organisation's work must not stop the loop that serves all of them."""
    for result in results:
        if isinstance(result, Exception):
            log.error("realtime: %s failed", what, exc_info=result)

