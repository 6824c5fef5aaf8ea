"""Meters and load: CPU by process group (from /proc), RSS, percentiles, closed-loop rates."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                         capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone): a PostgreSQL
    backend's own CPU, whatever else runs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_cpu() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


Snapshot = dict[str, dict[int, float]]


class CpuMeter:
    """Where the machine's CPU goes during a measurement, per named group of processes (e.g.
    API servers, PostgreSQL, the generator), and `other`: everything else on the machine."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups

    def snapshot(self) -> Snapshot:
        taken = {name: {pid: process_cpu(pid) for pid in pids()}
                 for name, pids in self.groups.items()}
        taken["machine"] = {0: machine_busy_cpu()}
        return taken

    @staticmethod
    def cores(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
        used = {
            name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            / seconds
            for name in after
        }
        # Everything else on the machine: other people's tests are the usual noise.
        used["other"] = max(0.0, used.pop("machine") - sum(used.values()))
        return used

    async def metered(self, run: Awaitable[T]) -> tuple[T, dict[str, float]]:
        """`run`'s result, and the cores each group kept busy meanwhile."""
        before, started = self.snapshot(), time.perf_counter()
        result = await run
        return result, self.cores(before, self.snapshot(), time.perf_counter() - started)


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(p50, p99)."""
    return percentile(values, 50), percentile(values, 99)


async def closed_tasks(op: Callable[[int, int], Awaitable[object]], tasks: int, duration: float,
                       warmup: float = 0.0) -> float:
    """`tasks` tasks, task i running `op(i, n)` for n = 0, 1, … each as soon as the last returns,
    for `warmup` + `duration` seconds; operations per second of those started after the warm-up.
    """
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + duration
    done = 0

    async def task(i: int) -> None:
        nonlocal done
        n = 0
        while (now := time.perf_counter()) < stop:
            await op(i, n)
            n += 1
            if now >= measure_from:
                done += 1

    await asyncio.gather(*(task(i) for i in range(tasks)))
    return done / (time.perf_counter() - measure_from)


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's `run` when installed (the generators' loop: less CPU per frame), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
