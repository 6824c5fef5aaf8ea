"""How benchmarks print: fixed-width tables, CPU columns, and ratios to a baseline of the same run.

Rates on a shared machine drift from minute to minute, so a figure is worth printing beside the
baseline it was measured against in the same run (back to back, in interleaved rounds): a ratio
row gives the median of each round's ratio, and every round's when there were several.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

GROUPS = ("api", "pg", "gen", "other")  # the process groups a CpuMeter of the servers reports


@dataclass(frozen=True)
class Column:
    """A column of a fixed-width table."""

    title: str
    width: int = 0  # 0: as wide as each cell (the last column)
    number: str = ""  # format of numeric cells, e.g. ".0f", "d"; text cells are printed as given
    unit: str = ""  # printed after a numeric cell, e.g. "x"
    left: bool = False  # labels align left; numbers, and their titles, right
    gap: str = " "  # printed before the column

    def cell(self, value: object) -> str:
        align = "<" if self.left else ">"
        width = str(self.width) if self.width else ""
        if value is None:
            value = ""
        if isinstance(value, str):
            return format(value, f"{align}{width}")
        return format(value, f"{align}{width}{self.number}") + self.unit


class Table:
    """Rows of cells under a header line, each cell formatted by its column."""

    def __init__(self, *columns: Column) -> None:
        self.columns = columns

    def header(self) -> str:
        return self.row(*(column.title for column in self.columns))

    def row(self, *cells: object) -> str:
        """One line; `cells` may stop short of the last columns."""
        line = "".join(column.gap + column.cell(value)
                       for column, value in zip(self.columns, cells, strict=False))
        return line[len(self.columns[0].gap):].rstrip()


def ms(seconds: float | None, decimals: int = 1) -> str:
    """Milliseconds for a latency column ("" for none)."""
    return "" if seconds is None else f"{seconds * 1000:.{decimals}f}"


def cores(cpu: dict[str, float]) -> str:
    """The `cores: api pg gen other` cell: cores each group kept busy during a run."""
    return " ".join(f"{cpu.get(group, 0.0):4.2f}" for group in GROUPS) if cpu else ""


def cpu_per_op(cpu: dict[str, float], rate: float | None,
               shown: tuple[str, ...] = ("api", "pg")) -> str:
    """The `CPU us/op: api pg` cell: the servers' and PostgreSQL's CPU per operation, for the
    groups `shown` (blank for the others and when there is no rate)."""
    if not cpu or not rate:
        return ""
    return " ".join(f"{cpu[group] / rate * 1e6:{width}.0f}" if group in shown else " " * width
                    for group, width in (("api", 6), ("pg", 5)))


class Run(Protocol):
    """A measured run: its rate, and the cores each process group kept busy meanwhile."""

    @property
    def rate(self) -> float | None: ...

    @property
    def cpu(self) -> dict[str, float]: ...


R = TypeVar("R", bound=Run)


def middle(runs: Sequence[R]) -> R:
    """The run of median rate (the higher of two; ties by CPU used)."""
    ordered = sorted(runs, key=lambda r: (r.rate or 0.0, sum(r.cpu.values())))
    return ordered[len(ordered) // 2]


class Ratios:
    """The ratio rows of a report, from its runs by name (one run per round, rounds in order):
    a row gives the median over rounds of the ratio within each round, and each round's."""

    def __init__(self, runs: Mapping[str, Sequence[Run]], label_width: int,
                 target_width: int) -> None:
        self.runs = runs
        self.table = Table(Column("", label_width, left=True, gap=""), Column("", 5, ".2f"),
                           Column("", target_width, left=True, gap="  "), Column("", left=True))

    def rates(self, top: str, bottom: str) -> list[float]:
        """Each round's rate of `top` / rate of `bottom` (the pair ran back to back); NaN for a
        round whose `bottom` did nothing (a starved smoke run), so its row still says so."""
        return [(a.rate or 0.0) / b.rate if b.rate else math.nan
                for a, b in self._pairs(top, bottom)]

    def cpus(self, top: str, bottom: str, groups: tuple[str, ...] = ("api", "pg")) -> list[float]:
        """Each round's CPU per operation of `bottom` / `top`'s (of `groups`): the rate ratio a
        machine bound by CPU alone would show."""
        def per_op(run: Run) -> float:
            return sum(run.cpu.get(group, 0.0) for group in groups) / (run.rate or 1)

        return [per_op(b) / per_op(a) if a.rate and b.rate and per_op(a) else math.nan
                for a, b in self._pairs(top, bottom)]

    def row(self, label: str, values: Sequence[float], target: str = "") -> list[str]:
        """The row of a ratio (none when it was not measured; n/a when no round could divide)."""
        if not values:
            return []
        spread = ", ".join(f"{v:.2f}" for v in values) if len(values) > 1 else ""
        measured = [v for v in values if not math.isnan(v)]
        if not measured:
            return [self.table.row(label, "n/a", target, "a rate was 0 in every round")]
        return [self.table.row(label, statistics.median(measured), target, spread)]

    def _pairs(self, top: str, bottom: str) -> list[tuple[Run, Run]]:
        return list(zip(self.runs.get(top, []), self.runs.get(bottom, []), strict=False))


def reproduce(script: str, argv: Sequence[str] | None) -> str:
    """The command line of this run, printed with its numbers (`argv` None: sys.argv's)."""
    return "  ".join([f".venv/bin/python bench/{Path(script).name}",
                      *(sys.argv[1:] if argv is None else argv)])
