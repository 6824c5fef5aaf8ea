"""`bench/realtime.py --quick` runs end to end (~50 s): a smoke check of the harness only."""

from __future__ import annotations

import re

import pytest

from tests.support.bench import run_bench, run_script


@pytest.mark.slow
def test_realtime_bench_quick_run_reports_every_row_and_delivers_exactly_once() -> None:
    out = run_bench("realtime.py", "--quick", timeout=300)
    for row in (
        "generator ceiling",
        "latency at 200/s, coalesced",
        "latency at 200/s, transaction",
        "max sustained, coalesced: DELIVERED/s",
        "max sustained, transaction: DELIVERED/s",
        "max sustained, no doorbell, 1 s poll: DELIVERED/s",
        "max sustained, doorbell off: SENT/s",
        "CPU at 200/s sent, coalesced",
        "CPU at 200/s sent, off",
        "DB: single-row INSERT (autocommit)",
        "DB: single-row INSERT + pg_notify, one tx",
        "DB: message INSERT in db.tenant(), coalesced ringer",
    ):
        line = next((line for line in out.splitlines() if line.startswith(row)), None)
        assert line is not None, f"no row {row!r} in:\n{out}"
        assert re.search(r"\s\d+\s", line[len(row):]), f"no rate in {line!r}"
    # Duplicates, seq gaps, resets, closed sockets, error frames, messages never delivered.
    assert "PROBLEMS" not in out, out
    assert "delivered coalesced / sent with doorbell off" in out
    assert "CPU/msg at fixed rate (api+pg+gen): off / coalesced" in out
    assert "one process with all 200 sockets" in out


@pytest.mark.slow
def test_realtime_bench_measures_only_the_phases_asked_for() -> None:
    out = run_bench("realtime.py", "--quick", "--modes", "coalesced", "--phases", "latency",
                    timeout=300)
    assert re.search(r"^latency at 200/s, coalesced\s+\d+", out, re.MULTILINE), out
    assert "PROBLEMS" not in out, out
    for absent in ("generator ceiling", "max sustained", "CPU at", "DB:", "one process with all"):
        assert absent not in out, f"{absent!r} was measured:\n{out}"


def test_realtime_bench_refuses_an_unknown_phase() -> None:
    proc = run_script("realtime.py", "--phases", "latency,nope", timeout=60)
    assert proc.returncode == 2
    assert "--phases: unknown nope" in proc.stderr, proc.stderr


def test_realtime_bench_refuses_an_ab_setting_that_is_not_the_services() -> None:
    proc = run_script("realtime.py", "--ab", "VECHAT_DOORBELL_BATCH_MS=5,PATH=/tmp", timeout=60)
    assert proc.returncode == 2
    assert "'PATH=/tmp': expected VECHAT_NAME=VALUE" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_realtime_bench_ab_runs_the_coalesced_doorbell_again_with_other_settings() -> None:
    out = run_bench("realtime.py", "--quick", "--modes", "coalesced,off", "--phases", "max",
                    "--ab", "VECHAT_DOORBELL_BATCH_MS=20", timeout=300)
    assert "ab: the coalesced doorbell with VECHAT_DOORBELL_BATCH_MS=20" in out, out
    assert re.search(r"^max sustained, ab: DELIVERED/s\s+\d+", out, re.MULTILINE), out
    # A 1 s smoke window may deliver nothing while a server paces: the row then says n/a.
    assert re.search(r"^delivered ab / delivered coalesced\s+(\d|n/a)", out, re.MULTILINE), out
    assert "PROBLEMS" not in out, out


@pytest.mark.slow
def test_realtime_bench_ab_settings_reach_the_servers() -> None:
    # A value the service refuses: the ab servers must have been started with it.
    proc = run_script("realtime.py", "--quick", "--modes", "coalesced", "--phases", "max",
                      "--ab", "VECHAT_DOORBELL_BATCH_MS=5000", timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "ab-A exited" in proc.stderr, proc.stderr[-2000:]
    assert "VECHAT_DOORBELL_BATCH_MS must be in 0..1000, got 5000" in proc.stderr, proc.stderr
