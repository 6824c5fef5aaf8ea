"""Delivery's pace: at once while delivery keeps up, in growing batches while it falls behind.

The hub tells the pacer, after each read, how many users are already waiting for the next one
(`observe`). A read that ends with nobody waiting means delivery keeps up, whatever the load or
the event loop's lag: the window is 0 and every doorbell is read at once. A backlog that grows
read after read (`GROWTHS_TO_OPEN` times in a row: a backlog that merely wavers on a busy host
is not one) while users already wait `OPEN_AFTER_WAIT_S` for their read (`waited`) means reads
cannot keep up: the window opens at `FIRST_WINDOW_S` and doubles each time the backlog grows
beyond the level that last widened it, up to `VECHAT_DELIVERY_PACE_MS`; the hub then reads, and
the ringer rings, at most once per window, so that each user's events are read together. The
first read that ends with nobody waiting closes it again. Only durable events wait; nothing is
lost or reordered.

Switches are logged at INFO. A WARNING says that deliveries are late: a user waited longer than
`late_after_s` (twice the pace, at least one second) between its doorbell and the read.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

FIRST_WINDOW_S = 0.005  # the window a backlog first opens: a few ms, not the whole pace
GROWTHS_TO_OPEN = 3  # reads in a row after which more users waited than after the one before
OPEN_AFTER_WAIT_S = 0.010  # ... and the oldest of a read's users waited this long: behind
LATE_AFTER_MIN_S = 1.0  # deliveries later than max(this, 2 x pace) are a WARNING
LATE_LOG_EVERY_S = 60.0  # ... at most once a minute
# The switches, as logged (bench/realtime.py counts them in the servers' logs).
BATCHING = "delivering in batches"
AT_ONCE = "delivering at once"


class Pacer:
    """The time delivery may wait to batch (`delay`, seconds): 0 while nothing queues up, else a
    window that grows with the backlog up to `pace_s`. One per process, shared by its hubs (each
    a `source`) and ringers."""

    def __init__(self, pace_s: float, *, first_window_s: float = FIRST_WINDOW_S) -> None:
        self.pace_s = pace_s
        self.first_window_s = min(first_window_s, pace_s)
        self.late_after_s = max(LATE_AFTER_MIN_S, 2 * pace_s)
        self.delay = 0.0
        self._backlogs: dict[object, int] = {}
        self._backlog = 0  # the sum over sources at the last observation
        self._high = 0  # the backlog that last widened the window (0: drained since)
        self._growths = 0  # reports in a row with a larger backlog than the one before
        self._waited = 0.0  # how long the oldest user of the last read waited for it
        self._late_logged = -LATE_LOG_EVERY_S

    async def hold(self, since: float) -> None:
        """Wait until `delay` after `since` (a `time.monotonic()`); at once when not batching."""
        wait = since + self.delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def observe(self, backlog: int, source: object = None) -> None:
        """`backlog`: users of `source` (a hub) waiting when its read ended. None waiting
        anywhere: at once; more than at the last observation: a wider window; else as it is."""
        self._backlogs[source] = backlog
        total = sum(self._backlogs.values())
        previous, self._backlog = self._backlog, total
        if self.pace_s <= 0:
            return
        if total != previous:  # another hub's unchanged report neither grows nor shrinks it
            self._growths = self._growths + 1 if total > previous else 0
        if total == 0:
            self._high = 0
            if self.delay:
                self.delay = 0.0
                log.info("realtime: backlog drained; %s", AT_ONCE)
        elif total > self._high and (
            self.delay or (self._growths >= GROWTHS_TO_OPEN and self._waited >= OPEN_AFTER_WAIT_S)
        ):
            # Growing, and beyond any level it has already widened the window for: a backlog
            # that merely wavers around one level keeps its window.
            self._high = total
            widened = min(self.pace_s, max(self.first_window_s, self.delay * 2))
            if widened != self.delay:
                if not self.delay:
                    log.info(
                        "realtime: %d users waiting after a read, up from %d; %s of %.0f ms, "
                        "growing with the backlog up to %d ms",
                        total,
                        previous,
                        BATCHING,
                        widened * 1000,
                        round(self.pace_s * 1000),
                    )
                else:
                    log.debug("realtime: backlog %d, up from %d; window %.0f ms", total,
                              previous, widened * 1000)
                self.delay = widened

    def forget(self, source: object) -> None:
        """`source` (a hub) stopped: its last backlog no longer counts."""
        self._backlogs.pop(source, None)

    def waited(self, seconds: float, users: int) -> None:
        """The oldest of the `users` a read is about to serve waited `seconds` since its
        doorbell: a WARNING beyond `late_after_s`, at most once a minute."""
        self._waited = seconds
        if seconds <= self.late_after_s:
            return
        now = time.monotonic()
        if now - self._late_logged >= LATE_LOG_EVERY_S:
            self._late_logged = now
            log.warning(
                "realtime: deliveries late: %d users read %.1f s after their doorbell (bound "
                "%.1f s; window %.0f ms); the process is short of CPU or database",
                users,
                seconds,
                self.late_after_s,
                self.delay * 1000,
            )
