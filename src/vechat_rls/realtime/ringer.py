"""The coalesced doorbell: one NOTIFY commit per process for a batch of committed writes.

Why. A transaction that calls `pg_notify` takes PostgreSQL's server-wide notify lock at commit and
holds it through its WAL flush, so every writing transaction that rings queues behind every other
one: insert+NOTIFY commits top out at a fraction of plain inserts (bench/realtime.py measures
both). With `VECHAT_DOORBELL=coalesced` (the default) the API's write transactions switch the
event trigger's NOTIFY off in their BEGIN batch (`db.tenant`, no extra round trip) and, after
COMMIT, call `Ringer.ring(organisation_id, recipients)`. This process's ringer then sends every
pending organisation in one short transaction on `vechat_events`, ids only like the trigger's
payload: `{"o": organisation_id, "e": [[user_type, user_id, 0], ...]}` when every transaction of
the batch named its recipients (`db.name_recipients`: a sent message names its two
participants), else `{"o": organisation_id, "e": []}` -- anyone of the organisation. While rings
keep coming it rings at most once per `VECHAT_DOORBELL_BATCH_MS` (once per
`VECHAT_DELIVERY_PACE_MS` while the process is short of CPU, realtime/pace.py); when idle, at
once. So N commits cost one NOTIFY commit, and the writers themselves never touch the notify lock.

Its connection runs with `synchronous_commit = off`: the ring carries no data (the events it
announces were committed durably before it was rung), so it need not wait for a WAL flush; a
ring lost in a server crash is covered like any other, by the listeners reconnecting and catching
up from the event log.

Receiving side (realtime/hub.py): seq 0 means "read whatever is there" for the users named; an
empty `e` names no one, so every local user of that organisation is read, in one query that
first skips users whose `vechat_event_cursors.last_seq` is not beyond what they were sent
(realtime/events.py). Naming recipients matters as organisations grow: bench/realtime.py
measured reading every local user per ring at about 2/3 of the delivered rate of named rings
with 50 users per organisation and process. A crash between a commit and its ring, or
a failed ring, is covered by the hub's safety-net poll (`VECHAT_REALTIME_POLL_S`). Writes from
outside the API (psql, other tools) do not switch the trigger off and keep ringing per commit;
`VECHAT_DOORBELL=transaction` makes the API do the same.

In registry mode each database has a ringer of its own (NOTIFY reaches only the listeners of the
database it is sent in), which lives as long as that database's pool (fleet.py) and opens its
connection through the process's connection budget; under pressure the budget may close it
between rings (`release_idle_connection`), and the next ring connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from vechat_rls import db
from vechat_rls.identity import USER_TYPES
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.tasks import stop_task

log = logging.getLogger(__name__)

# The channel the trigger rings too (realtime/listener.py: EVENTS_CHANNEL). One statement, its own
# (implicit) transaction: one NOTIFY commit for every organisation of the batch.
RING_SQL = "SELECT pg_catalog.pg_notify('vechat_events', p) FROM unnest($1::text[]) AS p"

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
PER_PAYLOAD = 100  # recipients per notification (a payload must stay under 8000 bytes)
MAX_NAMED = 1000  # an organisation with more pending recipients is rung as a whole


def payloads(organisation_id: int, recipients: frozenset[tuple[str, int]] | None) -> list[str]:
    """The notifications of one organisation: ids only (user types are one of two words)."""
    if not recipients:
        return [json.dumps({"o": int(organisation_id), "e": []})]
    named = sorted((t, int(i)) for t, i in recipients if t in USER_TYPES)
    return [
        json.dumps(
            {"o": int(organisation_id), "e": [[t, i, 0] for t, i in named[at : at + PER_PAYLOAD]]}
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
        self.pacer = pacer or Pacer(0)  # short of CPU: ring at most once per its delay instead
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
            # Short of CPU: the pacer's delay instead, when longer (realtime/pace.py).
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
