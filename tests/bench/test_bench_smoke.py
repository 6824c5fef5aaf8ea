"""The benchmark harnesses run end to end (`bench/http_api.py --quick --pg-profile`, ~30 s;
`bench/send_path.py`, `bench/read_events.py`, `bench/hub_read.py`, `bench/ws_send.py`,
`bench/protocol_cost.py`, `bench/send_round_trips.py`, small; `bench/hostile_clients.py`, ~25 s):
smoke checks of the harness, not numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.bench import run_bench


@pytest.mark.slow
def test_http_bench_quick_run_reports_every_row_without_errors(tmp_path: Path) -> None:
    out = run_bench("http_api.py", "--quick", "--pg-profile", str(tmp_path))
    for row in (
        "generator ceiling",
        "physical baseline: plain INSERT, message-shaped table",
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
    assert "API / physical baseline" in out
    assert "servers: vechat-rls serve (defaults)" in out, "measured as a user runs it"
    # The PostgreSQL profile: perf's phases for the three servers, or why there is none.
    if "perf not found" not in out:
        total = next((line for line in out.splitlines()
                      if line.startswith("PostgreSQL CPU per POST (median of rounds)")), None)
        assert total is not None, out
        signed, unsigned, bypass = (float(n) for n in total.split()[-5:-2])
        assert signed > 0 and unsigned > 0 and bypass > 0, total
        assert len(list(tmp_path.glob("perf-*.data"))) == 3, list(tmp_path.iterdir())


@pytest.mark.slow
def test_send_path_bench_compares_both_variants_round_by_round() -> None:
    out = run_bench("send_path.py", "--seconds", "0.5", "--rounds", "2")
    for variant in ("before", "after"):
        assert len(re.findall(rf"round \d {variant} *: +\d+ messages/s, PostgreSQL CPU +\d+ us",
                              out)) == 2, out
    assert "after / before, PostgreSQL CPU per message, round by round:" in out, out


@pytest.mark.slow
def test_read_events_bench_reads_every_recipients_new_events_as_both_roles() -> None:
    out = run_bench("read_events.py", "--pairs", "50", "--messages", "3", "--calls", "5")
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("vechat_app ", "vechat_bench_bypass "))]
    # role, recipients, "x", new events each, rows, wall, pg, pg per recipient, client
    assert {(r[0], r[1], r[3]) for r in rows} == {
        (role, recipients, new) for role in ("vechat_app", "vechat_bench_bypass")
        for recipients in ("2", "14", "100") for new in ("1", "3")
    }, out
    for r in rows:  # as vechat_app, only each recipient's own context shows their events
        assert int(r[4]) == int(r[1]) * int(r[3]), r
        assert float(r[5]) > 0 and float(r[7]) >= 0, r


@pytest.mark.slow
def test_hub_read_bench_queues_a_frame_per_new_event_and_none_without() -> None:
    out = run_bench("hub_read.py", "--pairs", "50", "--messages", "3", "--calls", "5")
    rows = [line.split() for line in out.splitlines()[2:]]
    # recipients, "x", new events each, frames, wall, api, api per recipient, pg, pg per recipient
    assert {(r[0], r[2]) for r in rows} == {
        (recipients, new) for recipients in ("2", "14", "100") for new in ("1", "0")
    }, out
    for r in rows:  # a frame for each new event the hub read back, none for a skipped recipient
        assert int(r[3]) == int(r[0]) * int(r[2]), r
        assert float(r[4]) > 0 and float(r[5]) > 0, r


def test_ws_send_bench_measures_every_variant_against_plain() -> None:
    out = run_bench("ws_send.py", "--frames", "2000", "--rounds", "1", timeout=120)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert set(rows) == {"plain", "watchdog", "wait_for"}, out
    assert float(rows["plain"][1]) == 1.0, out
    for us_per_frame, _ratio in rows.values():
        assert float(us_per_frame) > 0, out


def test_adopt_bench_adopts_and_rolls_back_a_small_legacy_database() -> None:
    out = run_bench("adopt.py", "--messages", "2000", "--conversations", "100", "--orphans", "5")
    assert "copied vechat_messages: 2000 rows" in out, out
    assert "created conversations for message pairs that had none: 5 rows" in out, out
    assert "copied public.vechat_messages back: 2000 rows" in out, out
    assert "verify: " in out and " 0 failed" in out, out
    assert re.search(r"adoption / baseline copy: \d+\.\d\d", out), out


def test_protocol_cost_bench_measures_both_protocols_for_both_requests() -> None:
    out = run_bench("protocol_cost.py", "--requests", "300", "--rounds", "1", timeout=60)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[4:] if line.strip()}
    assert set(rows) == {"GET", "POST"}, out
    for uvicorn_us, limited_us, _added, _ratio, *_rounds in rows.values():
        assert float(uvicorn_us) > 0 and float(limited_us) > 0, out


@pytest.mark.slow
def test_hostile_clients_bench_sees_this_tree_cut_every_hostile_client() -> None:
    """Against this tree's serve: the huge headers cut, 431, and no slow client left after 12 s
    (past the default header timeout, 10 s)."""
    out = run_bench("hostile_clients.py", "--slow-s", "12", timeout=120)
    assert "a complete 10 MB header: HTTP/1.1 431" in out, out
    assert "slow headers: 0 of 300 connections still open" in out, out
    sent = re.search(r"before it was cut: (.*)", out)
    assert sent and all(float(s.split()[0]) < 20 for s in sent.group(1).split(", ")), out


@pytest.mark.slow
def test_send_round_trips_bench_sends_both_ways_round_by_round() -> None:
    out = run_bench("send_round_trips.py", "--seconds", "0.5", "--rounds", "2", "--tasks", "4",
                    "--connections", "4")
    for mode in ("three round trips (the API)", "one round trip (function)"):
        assert len(re.findall(rf"round \d {re.escape(mode)} *: +\d+ sends/s, client CPU +\d+ us,"
                              r" PostgreSQL CPU +\d+ us per send", out)) == 2, out
    summary = r"one / three: sends/s \d+\.\d\d; per send the client saves -?\d+ us"
    assert re.search(summary, out), out
