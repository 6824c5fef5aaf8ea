"""`vechat-rls demo`: a migrated, seeded embedded cluster and working sign-in links, re-runnable."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import psycopg
import pytest

from vechat_rls.demo import CONTACTS, DATABASE, MESSAGES, ORGANISATIONS
from vechat_rls.pgserver import PgServer, embedded_bindir


def _demo(directory: Path, *extra: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "vechat_rls.cli", "demo", "--dir", str(directory), "--no-serve",
         "--port", "8799", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _admin_url(output: str) -> str:
    match = re.search(r"DBA database URL \(db status, audit, a registry\): (\S+)", output)
    assert match, output
    return match[1]


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


@pytest.mark.slow
def test_the_demos_postgresql_keeps_its_port_and_url_across_restarts(tmp_path: Path) -> None:
    """The DBA URL the demo prints (TCP, 127.0.0.1, its port) still works after a restart: the
    port is chosen once and kept in demo.json; --pg-port replaces it."""
    directory = tmp_path / "demo"
    server = PgServer(datadir=directory / "postgres", bindir=embedded_bindir())
    try:
        first = _admin_url(_demo(directory))
        assert re.fullmatch(r"postgresql://postgres:[^@]+@127\.0\.0\.1:\d+/vechat", first), first
        server.stop()  # the demo's PostgreSQL stops (as when `make run` ends)
        assert _admin_url(_demo(directory)) == first
        with psycopg.connect(first) as conn:
            assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (
                len(MESSAGES),
            )
        status = subprocess.run(
            [sys.executable, "-m", "vechat_rls.cli", "db", "status", "--database-url", first],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        server.stop()
        chosen = _free_port()
        moved = _admin_url(_demo(directory, "--pg-port", str(chosen)))
        assert moved == first.replace(f":{urlsplit(first).port}/", f":{chosen}/")
        server.stop()
        assert _admin_url(_demo(directory)) == moved  # kept
    finally:
        server.stop("immediate")


@pytest.mark.slow
def test_token_signs_with_the_demos_secret_in_the_folder_it_was_set_up_in(
    tmp_path: Path,
) -> None:
    """After `make run` (`vechat-rls demo` in the project folder), `vechat-rls token` works
    there without VECHAT_JWT_SECRET; elsewhere it says where the secret is."""
    directory = tmp_path / ".vechat"
    server = PgServer(datadir=directory / "postgres", bindir=embedded_bindir())
    env = {k: v for k, v in os.environ.items() if k != "VECHAT_JWT_SECRET"}
    token_command = [sys.executable, "-m", "vechat_rls.cli", "token", "--org", "1", "--user",
                     "2", "--type", "personnel"]
    try:
        output = _demo(directory)
        assert "vechat-rls token --org 1 --user 2 --type personnel" in output
        links = re.findall(r"http://127\.0\.0\.1:8799/\?access_token=(\S+)", output)
        names = {jwt.decode(t, options={"verify_signature": False}).get("org_name")
                 for t in links}
        assert names == set(ORGANISATIONS.values())  # display only, shown in the header
        made = subprocess.run(token_command, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
        secret = json.loads((directory / "demo.json").read_text())["jwt_secret"]
        claims = jwt.decode(made.stdout.strip(), secret, algorithms=["HS256"])
        assert (claims["org"], claims["sub"], claims["user_type"]) == (1, "2", "personnel")
        assert ".vechat/demo.json" in made.stderr
        elsewhere = subprocess.run(token_command, cwd=tmp_path / ".vechat", env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
        assert elsewhere.returncode == 2 and made.stdout
        assert "VECHAT_JWT_SECRET is not set" in elsewhere.stderr
        assert "demo.json" in elsewhere.stderr and elsewhere.stderr.count("\n") == 1
    finally:
        server.stop("immediate")
