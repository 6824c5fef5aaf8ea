"""`vechat-rls demo`: a migrated, seeded embedded cluster and working sign-in links, re-runnable."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jwt
import psycopg
import pytest

from vechat_rls.demo import CONTACTS, DATABASE, MESSAGES
from vechat_rls.pgserver import PgServer, embedded_bindir


def _demo(directory: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "vechat_rls.cli", "demo", "--dir", str(directory), "--no-serve",
         "--port", "8799"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_demo_seeds_two_organisations_and_prints_a_sign_in_link_per_user(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    server = PgServer(datadir=directory / "postgres", bindir=embedded_bindir())
    try:
        first = _demo(directory)
        links = re.findall(r"http://127\.0\.0\.1:8799/\?access_token=(\S+)", first)
        assert len(links) == len(CONTACTS)
        claims = [jwt.decode(t, options={"verify_signature": False}) for t in links]
        assert {(c["org"], c["sub"], c["user_type"]) for c in claims} == {
            (c["org"], str(c["id"]), c["type"]) for c in CONTACTS
        }
        assert "password" not in first.lower()

        second = _demo(directory)  # reuses the cluster; migrations and seed are idempotent
        assert "nothing to do" in second
        server.start()  # attaches to the running cluster
        with psycopg.connect(server.admin_url(DATABASE)) as conn:
            counts = conn.execute(
                "SELECT organisation_id, count(*) FROM vechat_messages GROUP BY 1 ORDER BY 1"
            ).fetchall()
            wrong = conn.execute("SELECT vechat.recount_unread(1) + vechat.recount_unread(2)")
            assert wrong.fetchone() == (0,)
        expected: dict[int, int] = {}
        for org, *_ in MESSAGES:
            expected[org] = expected.get(org, 0) + 1
        assert dict(counts) == expected
    finally:
        server.stop("immediate")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_demo_stops_its_cluster(tmp_path: Path, signum: int) -> None:
    """`make run` ended by Ctrl-C or `kill`: the server stops and so does its PostgreSQL."""
    directory = tmp_path / "demo"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vechat_rls.cli", "demo", "--dir", str(directory),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    postmaster = directory / "postgres" / "pgdata" / "postmaster.pid"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2),
            ):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert postmaster.exists()
        cluster_pid = int(postmaster.read_text().split()[0])
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 128 + signum), (proc.returncode, err)
        assert "Traceback" not in err, err
        assert not postmaster.exists()
        assert _gone(cluster_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
        PgServer(datadir=directory / "postgres", bindir=embedded_bindir()).stop("immediate")


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left for its parent (here PID 1) to reap."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
