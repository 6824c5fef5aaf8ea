"""Typing indicators: rung by the typist's process, shown (and expired) by the peer's.

A `typing` frame is checked under the sender's context (only a participant finds the
conversation, and the peer comes from its row) and rung on `vechat_typing`, sealed
(db/seal.py), in the same transaction; the process holding the peer's sockets checks the
notice again (user types, positive ids) before sending the frame and, unless it is refreshed,
`is_typing: false` after `TYPING_TTL_S`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import msgspec

from vechat_rls import db
from vechat_rls.db import seal
from vechat_rls.identity import Identity, User
from vechat_rls.realtime.events import Frame, encode
from vechat_rls.realtime.sockets import Sockets

TYPING_TTL_S = 5.0
TYPING_REFRESH_MIN_S = 1.0  # a client repeating "typing" faster than this rings nothing new


TYPING_CHANNEL = "vechat_typing"  # realtime/listener.py
Positive = Annotated[int, msgspec.Meta(gt=0)]
Participant = tuple[Literal["personnel", "client"], Positive]


class _TypingNotice(msgspec.Struct, frozen=True):
    o: Positive
    c: Positive
    f: Participant
    t: Participant
    y: bool


# The conversation's organisation and the caller's peer in it, found only when the caller takes
# part (both users of the notice are then its participants, in its organisation).
# visibility: vechat_conversations_select_participant — a non-participant finds no row.
TYPING_SQL = """
SELECT c.organisation_id,
       CASE WHEN c.participant1_id = $3 AND c.participant1_type = $2
            THEN c.participant2_type ELSE c.participant1_type END AS peer_type,
       CASE WHEN c.participant1_id = $3 AND c.participant1_type = $2
            THEN c.participant2_id ELSE c.participant1_id END AS peer_id
FROM public.vechat_conversations c
WHERE c.id = $1
"""
NOTIFY_SQL = "SELECT pg_catalog.pg_notify($1, $2)"  # delivered when the transaction commits

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
        row = await conn.fetchrow(TYPING_SQL, conversation_id, identity.user_type, identity.user_id)
        if row is None:
            return False
        notice = {
            "o": row["organisation_id"],
            "c": conversation_id,
            "f": [identity.user_type, identity.user_id],
            "t": [row["peer_type"], row["peer_id"]],
            "y": is_typing,
        }
        await conn.execute(NOTIFY_SQL, TYPING_CHANNEL, seal.seal(TYPING_CHANNEL, notice))
        self._sent[throttle] = (is_typing, now)
        if len(self._sent) > 10_000:
            self._sent.clear()
        return True

    def on_notice(self, payload: Any) -> None:
        """A `vechat_typing` notice, opened (db/seal.py) and checked again here."""
        notice = msgspec.convert(payload, type=_TypingNotice)
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
