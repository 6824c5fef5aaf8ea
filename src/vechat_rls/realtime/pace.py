"""Delivery's pace: at once while this process keeps up, in batches while it is short of CPU.

The pacer averages how late the event loop wakes from a short sleep over one-second windows:
above `LAG_ON_S` the pace becomes `VECHAT_DELIVERY_PACE_MS`, and the hub reads and the ringer
rings at most once per pace; below `LAG_OFF_S` it is 0 again (in between it stays as it is).
Only durable events wait; nothing is lost or reordered.
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
