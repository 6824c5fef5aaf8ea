"""Delivery's pace: at once while this process keeps up, in batches while it is short of CPU.

Why. Delivering an event costs the same fixed work whether it is one event or several: a hub read
acts for each recipient under their own context (a few statements per recipient in
`vechat.read_events`), every ring of the coalesced doorbell is a NOTIFY commit that wakes every
listener, and every wake-up costs each process it reaches. Read at once, each recipient comes with
one event; read once a second, with every event of that second. bench/realtime.py on 2 cores: with
a read and a ring at every doorbell, the delivered rate stays near 0.8 of what the same servers
send with the doorbell off; reading and ringing at most once a second, 0.98. At 200 messages/s
nothing needs batching and reading at once is what keeps latency at a few milliseconds.

How. The pacer samples how late the event loop wakes from a short sleep (its lag) and averages that
over one-second windows. A process whose loop runs late on average is short of CPU: above
`LAG_ON_S` the pace becomes `VECHAT_DELIVERY_PACE_MS`, and the hub reads (realtime/hub.py) and
the ringer rings (realtime/ringer.py) at most once per pace; below `LAG_OFF_S` it is 0 again.
Between the two it stays as it is, so a process at the edge does not switch every second. Only
durable events wait: acks, typing and presence never do, and nothing is lost or reordered, since
every read starts from what each socket was sent.

Measured with bench/realtime.py (2 cores, everything on them): mean lag 0.02-0.45 ms per window at
200 messages/s, 1.1-2.7 ms at the maximum rate.
"""

from __future__ import annotations

import asyncio
import logging
import time

from vechat_rls.realtime.tasks import stop_task

log = logging.getLogger(__name__)

SAMPLE_S = 0.02  # how often the lag is sampled
WINDOW_S = 1.0  # the lag is averaged over this long
LAG_ON_S = 0.001  # mean lag above this: batch
LAG_OFF_S = 0.0005  # mean lag below this: at once again
# The switches, as logged (bench/realtime.py counts them in the servers' logs).
BATCHING = "delivering in batches"
AT_ONCE = "delivering at once"


class Pacer:
    """The time delivery may wait to batch (`delay`, seconds): 0, or `pace_s` under CPU pressure."""

    def __init__(
        self,
        pace_s: float,
        *,
        sample_s: float = SAMPLE_S,
        window_s: float = WINDOW_S,
        lag_on_s: float = LAG_ON_S,
        lag_off_s: float = LAG_OFF_S,
    ) -> None:
        self.pace_s = pace_s
        self.sample_s = sample_s
        self.window_s = window_s
        self.lag_on_s = lag_on_s
        self.lag_off_s = lag_off_s
        self.delay = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch the running loop; with a pace of 0 there is nothing to watch."""
        if self.pace_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vechat-pacer")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        self.delay = 0.0

    async def hold(self, since: float) -> None:
        """Wait until `delay` after `since` (a `time.monotonic()`); at once when not pacing."""
        wait = since + self.delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def observe(self, mean_lag: float) -> None:
        """One window's mean lag (seconds): switch the pace on or off."""
        if not self.delay and mean_lag > self.lag_on_s:
            self.delay = self.pace_s
            log.warning(
                "realtime: event loop %.1f ms late on average; %s of %d ms",
                mean_lag * 1000,
                BATCHING,
                round(self.pace_s * 1000),
            )
        elif self.delay and mean_lag < self.lag_off_s:
            self.delay = 0.0
            log.warning("realtime: event loop on time again; %s", AT_ONCE)

    async def _run(self) -> None:
        late = 0.0
        samples = 0
        window_start = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.sample_s)
            now = time.monotonic()
            late += max(0.0, now - before - self.sample_s)
            samples += 1
            if now - window_start >= self.window_s:
                self.observe(late / samples)
                late, samples, window_start = 0.0, 0, now
