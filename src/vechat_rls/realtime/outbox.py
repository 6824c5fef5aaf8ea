"""One socket's side of the hub: its bounded queue of frames, and the last seq put on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from vechat_rls.identity import Identity
from vechat_rls.realtime.events import Frame, encode

EPHEMERAL_SLACK = 64  # frames without a seq a full queue still takes before the socket is dropped
CLOSE_TRY_AGAIN = 1013


class Outbox:
    """A socket's frames on their way out; the socket's sender task drains it (api/ws.py).

    Events are queued in seq order up to `limit`; a full outbox stops taking them ("lagging")
    until it has sent half its queue, and is then read again from `delivered` (`on_resume`).
    Frames without a seq (typing, presence, replies) are queued regardless, up to a slack; a
    socket beyond that is dropped (1013).
    """

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
