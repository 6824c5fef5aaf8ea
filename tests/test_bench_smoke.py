"""`bench/http.py --quick` runs end to end (~17 s): a smoke check of the harness, not numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "http.py"


@pytest.mark.slow
def test_http_bench_quick_run_reports_every_row_without_errors() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    for row in (
        "generator ceiling",
        "raw asyncpg INSERT in db.tenant() as vechat_app",
        "POST messages as vechat_app ",
        "POST messages as BYPASSRLS role",
        "GET conversation page",
        "GET conversation list",
    ):
        line = next((line for line in out.splitlines() if line.startswith(row)), None)
        assert line is not None, f"no row {row!r} in:\n{out}"
        assert re.search(r"\s\d+\s", line[len(row):]), f"no rate in {line!r}"
    assert "statuses:" not in out, out  # a request answered 4xx/5xx
    assert "API / raw (same tenant tx)" in out and "RLS cost, API" in out
