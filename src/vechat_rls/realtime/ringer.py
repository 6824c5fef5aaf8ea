"""The ringer: one NOTIFY commit per process for a batch of committed writes (coalesced mode).

In the coalesced doorbell mode a write transaction silences the event trigger's NOTIFY in its
BEGIN batch and, after COMMIT, calls `Ringer.ring(organisation_id, recipients)`. The ringer
rings `vechat_events` for every pending organisation in one short transaction of its own: at
most once per `VECHAT_DOORBELL_BATCH_MS` while rings keep coming (once per pace while the
process is short of CPU), at once when idle. Payloads are sealed (db/seal.py: a listening
login reads nothing of them, a forged one is dropped): `{"o": organisation, "e": [[user_type,
user_id, 0], ...]}` when every write of the batch named its recipients, else `{"o": organisation,
"e": []}`. Registry mode has one ringer per database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from vechat_rls import db
from vechat_rls.db import seal
from vechat_rls.identity import USER_TYPES
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.tasks import stop_task

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "vechat_events"  # the channel the trigger rings too (realtime/listener.py)
# One statement, its own (implicit) transaction: one NOTIFY commit for every organisation of the
# batch.
RING_SQL = "SELECT pg_catalog.pg_notify('vechat_events', p) FROM unnest($1::text[]) AS p"

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
PER_PAYLOAD = 100  # recipients per notification (a payload must stay under 8000 bytes)
MAX_NAMED = 1000  # an organisation with more pending recipients is rung as a whole


def payloads(organisation_id: int, recipients: frozenset[tuple[str, int]] | None) -> list[str]:
    """The notifications of one organisation, sealed (user types are one of two words)."""
    if not recipients:
        return [seal.seal(EVENTS_CHANNEL, {"o": int(organisation_id), "e": []})]
    named = sorted((t, int(i)) for t, i in recipients if t in USER_TYPES)
    return [
        seal.seal(
            EVENTS_CHANNEL,
            {"o": int(organisation_id), "e": [[t, i, 0] for t, i in named[at : at + PER_PAYLOAD]]},
        )
        for at in range(0, len(named), PER_PAYLOAD)
    ]


class Ringer:
    """Rings `vechat_events` for the organisations whose writes committed since the last ring."""

    def __init__(
        self,
        url: str,
        batch_s: float,
        pacer: Pacer | None = None,
        *,
        budget: db.ConnectionBudget | None = None,
    ) -> None:
        self.url = url
        self.batch_s = batch_s
        self.pacer = pacer or Pacer(0)  # falling behind: ring at most once per its window
        self.budget = budget
        self.rings = 0  # NOTIFY commits sent (tests, benchmarks)
        self._pending: dict[int, set[tuple[str, int]] | None] = {}
        self._wake = asyncio.Event()
        self._conn: db.Connection | None = None
        self._ringing = False
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0

    def ring(
        self, organisation_id: int, recipients: frozenset[tuple[str, int]] | None = None
    ) -> None:
        """A write of `organisation_id` for `recipients` (None: anyone) has committed.

        Recipients are users of that organisation by `(user_type, user_id)`, the form the payload
        carries.

        Called by `db.tenant` after COMMIT; never blocks.
        """
        if recipients is None:
            self._pending[organisation_id] = None
        elif organisation_id not in self._pending:
            self._pending[organisation_id] = set(recipients)
        else:
            pending = self._pending[organisation_id]
            if pending is not None:
                pending.update(recipients)
                if len(pending) > MAX_NAMED:
                    self._pending[organisation_id] = None
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vechat-ringer")

    async def stop(self) -> None:
        """Ring what is still pending (best effort), then close the connection."""
        await stop_task(self._task)
        self._task = None
        if self._pending:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ring_pending(), timeout=2)
        await self._close()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            await self._wake.wait()
            # Busy: let the commits of the next `batch_s` join this ring. Idle: ring at once.
            # Delivery falling behind: the pacer's window instead, when longer (realtime/pace.py).
            wait = self._last + max(self.batch_s, self.pacer.delay) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            try:
                await self._ring_pending()
                delay = RETRY_FIRST_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kept pending and rung again; meanwhile the hubs' poll covers what it announces.
                log.warning("realtime: doorbell ring failed (%s); retrying", type(exc).__name__)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                self._wake.set()

    async def _ring_pending(self) -> None:
        if not self._pending:
            return
        # Taken before the ring: a write committing while it is on its way may be read before
        # or after the ringing commit, so it must ring again.
        organisations, self._pending = self._pending, {}
        self._ringing = True
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await db.connect(
                    self.url,
                    budget=self.budget,
                    application_name="vechat-rls ringer",
                    synchronous_commit="off",
                )
            self._last = time.monotonic()
            notices = [
                text
                for o, named in sorted(organisations.items())
                for text in payloads(o, frozenset(named) if named is not None else None)
            ]
            await self._conn.execute(RING_SQL, notices)
        except BaseException:
            for o, named in organisations.items():
                self.ring(o, frozenset(named) if named is not None else None)
            raise
        finally:
            self._ringing = False
        self.rings += 1

    async def release_idle_connection(self) -> bool:
        """Close the connection if it is not ringing right now (the connection budget asks)."""
        if self._ringing or self._conn is None or self._conn.is_closed():
            return False
        await self._close()
        return True

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()
