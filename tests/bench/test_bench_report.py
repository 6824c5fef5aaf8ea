"""The benches' ratio rows (bench/harness/report.py): a round that did nothing is said, not
dropped, so a starved smoke run still prints every ratio it was asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from tests.support.bench import load_bench_module


def _report() -> ModuleType:
    return load_bench_module("harness/report.py", "bench_report")


@dataclass
class Run:
    rate: float | None
    cpu: dict[str, float] = field(default_factory=lambda: {"api": 0.5, "pg": 0.5})


def rows(runs: dict[str, list[Run]]) -> list[str]:
    ratios = _report().Ratios(runs, 20, 10)
    return ratios.row("top / bottom", ratios.rates("top", "bottom"), "(target)")


def test_a_ratio_is_the_median_of_its_rounds() -> None:
    (line,) = rows({"top": [Run(50), Run(90), Run(80)], "bottom": [Run(100)] * 3})
    assert line.startswith("top / bottom") and " 0.80 " in line and "0.50, 0.90, 0.80" in line


def test_a_top_that_did_nothing_is_a_ratio_of_zero() -> None:
    (line,) = rows({"top": [Run(0)], "bottom": [Run(100)]})
    assert " 0.00 " in line


def test_a_bottom_that_did_nothing_is_said() -> None:
    (line,) = rows({"top": [Run(10)], "bottom": [Run(0)]})
    assert "n/a" in line and "a rate was 0 in every round" in line
    (line,) = rows({"top": [Run(10), Run(30)], "bottom": [Run(0), Run(60)]})
    assert " 0.50 " in line


def test_no_runs_no_row() -> None:
    assert rows({"top": [Run(10)]}) == []
