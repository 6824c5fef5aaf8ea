"""Presence leases: one row per user with sockets here, written on change, renewed, swept.

`vechat.set_leases` writes them (one call per organisation, a token signed for each user) and says
who came online or went offline anywhere; `vechat.sweep_leases` ends the leases of processes that
stopped renewing them (killed with -9) and says whose. Both are rung on `vechat_presence`, sealed,
in the same transaction (presence_frames.ring).
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

from vechat_rls import db
from vechat_rls.config import Settings
from vechat_rls.identity import Identity, User
from vechat_rls.realtime import presence_frames
from vechat_rls.realtime.sockets import Sockets

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after a failed write, the leases are tried again this much later

SET_LEASES_SQL = "SELECT * FROM vechat.set_leases($1, $2, $3::jsonb)"
SWEEP_LEASES_SQL = "SELECT * FROM vechat.sweep_leases()"


def server_id() -> str:
    """This process's name in the lease table: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """This process's leases in `vechat_presence_connections`, kept as its sockets come and go.

    A user's lease is written when their count of sockets here changes and renewed for every
    user each third of `VECHAT_PRESENCE_LEASE_S`.
    """

    def __init__(self, database: db.Database, settings: Settings, sockets: Sockets) -> None:
        self.database = database
        self.settings = settings
        self.sockets = sockets
        self.server_id = server_id()
        self.stopping = False  # every lease is given up (written with no sockets)
        self._dirty: dict[User, Identity] = {}
        self._wake = asyncio.Event()

    def changed(self, user: User, identity: Identity) -> None:
        """`user`'s count of sockets here changed: write their lease."""
        self._dirty[user] = identity
        self._wake.set()

    async def run(self) -> None:
        renew_every = self.settings.presence_lease_s / 3
        next_renewal = time.monotonic() + renew_every
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the event is set, and Hub.stop() sets it (sockets dropped) before
            # cancelling.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_renewal - time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + renew_every
                for user, connected in self.sockets.users.items():
                    self._dirty.setdefault(user, connected.identity)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime: lease update failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def flush(self) -> None:
        """Write the leases of every user whose socket count changed (or is due renewal)."""
        dirty, self._dirty = self._dirty, {}
        by_org: dict[int, dict[User, Identity]] = defaultdict(dict)
        for user, identity in dirty.items():
            by_org[user.organisation_id][user] = identity
        try:
            for organisation_id in list(by_org):
                users = by_org[organisation_id]
                acting = next(iter(users.values())).bare()
                async with db.tenant(self.database, acting, appends_events=False) as conn:
                    leases = [
                        [
                            user.user_type,
                            user.user_id,
                            0 if self.stopping else self.sockets.count(user),
                            await conn.sign(user.acting()),
                        ]
                        for user in users
                    ]
                    rows = await conn.fetch(
                        SET_LEASES_SQL, self.server_id, self.settings.presence_lease_s, leases
                    )
                    changed = [(r["user_type"], r["user_id"]) for r in rows if r["change"]]
                    await presence_frames.ring(conn, organisation_id, changed)
                del by_org[organisation_id]
        finally:
            # Whatever was not written is written next time (a newer change wins).
            for users in by_org.values():
                for user, identity in users.items():
                    self._dirty.setdefault(user, identity)

    async def sweep(self, conn: db.Transaction) -> None:
        """End the expired leases of the transaction's organisation (and ring for them)."""
        rows = await conn.fetch(SWEEP_LEASES_SQL)
        users = [(r["user_type"], r["user_id"]) for r in rows]
        await presence_frames.ring(conn, conn.identity.organisation_id, users)
