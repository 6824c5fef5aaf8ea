"""Typing indicators: rung by the typist's process, shown (and expired) by the peer's.

A `typing` frame is checked under the sender's context (only a participant finds the
conversation) and rung on `vechat_typing` with ids only, in the same statement; the process
holding the peer's sockets sends the frame and, unless it is refreshed, `is_typing: false` after
`TYPING_TTL_S`.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from vechat_rls import db
from vechat_rls.identity import Identity, User
from vechat_rls.realtime.events import Frame, encode
from vechat_rls.realtime.sockets import Sockets

TYPING_TTL_S = 5.0
TYPING_REFRESH_MIN_S = 1.0  # a client repeating "typing" faster than this rings nothing new


class _TypingNotice(msgspec.Struct, frozen=True):
    o: int
    c: int
    f: tuple[str, int]
    t: tuple[str, int]
    y: bool


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

_TimerKey = tuple[User, int, tuple[str, int]]  # (to, conversation, from)


class Typing:
    """Both ends of the typing indicator for this process's sockets."""

    def __init__(self, sockets: Sockets) -> None:
        self.sockets = sockets
        self._timers: dict[_TimerKey, asyncio.TimerHandle] = {}
        self._sent: dict[tuple[User, int], tuple[bool, float]] = {}

    async def announce(
        self, conn: db.Transaction, identity: Identity, conversation_id: int, is_typing: bool
    ) -> bool:
        """Ring the peer's typing indicator; False when the caller is not in the conversation."""
        throttle = (identity.user, conversation_id)
        now = time.monotonic()
        last = self._sent.get(throttle)
        if last is not None and last[0] == is_typing and now - last[1] < TYPING_REFRESH_MIN_S:
            return True
        rung = await conn.fetch(
            TYPING_SQL, conversation_id, identity.user_type, identity.user_id, is_typing
        )
        if not rung:
            return False
        self._sent[throttle] = (is_typing, now)
        if len(self._sent) > 10_000:
            self._sent.clear()
        return True

    def on_notice(self, payload: str) -> None:
        notice = msgspec.json.decode(payload, type=_TypingNotice)
        to = User(notice.o, notice.t[0], notice.t[1])
        if to not in self.sockets.users:
            return
        timer_key = (to, notice.c, notice.f)
        timer = self._timers.pop(timer_key, None)
        if timer is not None:
            timer.cancel()
        self._push(to, notice.c, notice.f, notice.y)
        if notice.y:
            self._timers[timer_key] = asyncio.get_running_loop().call_later(
                TYPING_TTL_S, self._expired, timer_key
            )

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()

    def _expired(self, timer_key: _TimerKey) -> None:
        self._timers.pop(timer_key, None)
        to, conversation_id, sender = timer_key
        self._push(to, conversation_id, sender, False)

    def _push(
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
        self.sockets.push(to, encode(frame))
