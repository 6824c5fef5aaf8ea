"""`vechat-rls demo`: a migrated, seeded embedded cluster and working sign-in links, re-runnable."""

from __future__ import annotations

import re
import subprocess
import sys
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
