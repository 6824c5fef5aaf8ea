"""Presence frames: when a user's presence may have changed, tell their peers connected here.

A `vechat_presence` doorbell names the user, sealed (db/seal.py; `ring` sends it in the
writer's transaction); the process reads, acting as that user, their conversation peers and
`vechat.presence_view` (which honours `show_online_status`), and sends a `presence` frame to each
peer with a socket here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from vechat_rls import db
from vechat_rls.db import seal
from vechat_rls.identity import User
from vechat_rls.realtime.events import Frame, encode
from vechat_rls.realtime.sockets import Sockets

log = logging.getLogger(__name__)


PRESENCE_CHANNEL = "vechat_presence"  # realtime/listener.py
Positive = Annotated[int, msgspec.Meta(gt=0)]


class _PresenceNotice(msgspec.Struct, frozen=True):
    o: Positive
    u: tuple[Literal["personnel", "client"], Positive]


RING_SQL = "SELECT pg_catalog.pg_notify('vechat_presence', p) FROM unnest($1::text[]) AS p"


async def ring(conn: db.Transaction, organisation_id: int, users: list[tuple[str, int]]) -> None:
    """Ring `vechat_presence` for `users` of the organisation when `conn` commits (sealed)."""
    if users:
        notices = [
            seal.seal(PRESENCE_CHANNEL, {"o": organisation_id, "u": [user_type, user_id]})
            for user_type, user_id in users
        ]
        await conn.execute(RING_SQL, notices)


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


class PresenceFrames:
    """Turns `vechat_presence` doorbells into `presence` frames for the peers connected here."""

    def __init__(self, database: db.Database, sockets: Sockets, reads: asyncio.Semaphore) -> None:
        self.database = database
        self.sockets = sockets
        self.reads = reads  # shared with the hub's reads of events
        self._dirty: dict[int, set[tuple[str, int]]] = defaultdict(set)
        self._wake = asyncio.Event()

    def on_notice(self, payload: Any) -> None:
        notice = msgspec.convert(payload, type=_PresenceNotice)
        if self.sockets.serves(notice.o):
            self._dirty[notice.o].add(notice.u)
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, defaultdict(set)
            for organisation_id, users in dirty.items():
                for user_type, user_id in sorted(users):
                    try:
                        await self._send(User(organisation_id, user_type, user_id))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("realtime: presence frame failed (%s)", type(exc).__name__)

    async def _send(self, user: User) -> None:
        if not self.sockets.serves(user.organisation_id):
            return
        async with (
            self.reads,
            db.tenant(self.database, user.acting(), readonly=True) as conn,
        ):
            row = await conn.fetchrow(PRESENCE_SQL, user.user_id, user.user_type)
        assert row is not None
        last_seen: datetime | None = row["last_seen"]
        frame = encode(
            Frame(
                "presence",
                {
                    "user_id": user.user_id,
                    "user_type": user.user_type,
                    "status": row["status"] or "offline",
                    "last_seen": last_seen,
                },
            )
        )
        for peer in row["peers"]:
            peer_type, _, peer_id = peer.partition(":")
            self.sockets.push(User(user.organisation_id, peer_type, int(peer_id)), frame)
