"""`vechat-rls serve`: refuses roles that could bypass RLS; serves with several worker processes."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.api import api_settings, wait_ready
from tests.support.fixtures import Database
from tests.support.scratch import Scratch
from vechat_rls import cli
from vechat_rls.api.app import create_app
from vechat_rls.api.serving import METRICS_DIR_VARIABLES, TokenRedactingFilter, shared_metrics
from vechat_rls.auth import mint_token
from vechat_rls.pgserver import free_port

SECRET = "serve-test-secret-long-enough-for-hs256"


def _serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> tuple[int, str]:
    monkeypatch.setenv("VECHAT_DATABASE_URL", url)
    monkeypatch.setenv("VECHAT_JWT_SECRET", SECRET)
    code = cli.main(["serve", "--port", str(free_port())])
    return code, capsys.readouterr().err


def test_serve_refuses_a_superuser(
    scratch: Scratch, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _serve(monkeypatch, capsys, scratch.admin_url)
    assert code != 0
    assert err.count("\n") == 1 and "refusing to serve" in err and "superuser" in err


def test_serve_refuses_a_bypassrls_role(
    scratch: Scratch, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _serve(monkeypatch, capsys, scratch.url_for(scratch.new_login_role("BYPASSRLS")))
    assert code != 0 and "BYPASSRLS" in err and err.count("\n") == 1


def test_serve_refuses_a_role_that_owns_a_vechat_table(
    scratch: Scratch, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    role = scratch.new_login_role(f"IN ROLE {scratch.owner_role}")
    code, err = _serve(monkeypatch, capsys, scratch.url_for(role))
    assert code != 0 and "public.vechat_items" in err and err.count("\n") == 1


def test_serve_names_an_unreachable_database_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://vechat_app:pw-not-shown@127.0.0.1:{free_port()}/nowhere"
    code, err = _serve(monkeypatch, capsys, url)
    assert code != 0 and "cannot connect" in err and "pw-not-shown" not in err


def test_serve_without_jwt_key_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VECHAT_JWT_SECRET", raising=False)
    monkeypatch.delenv("VECHAT_JWT_PUBLIC_KEY", raising=False)
    assert cli.main(["serve"]) == 2
    assert "VECHAT_JWT_SECRET" in capsys.readouterr().err


HEALTH_REQUESTS = 40


def _counted(exposition: str, metric: str, path: str) -> float:
    """The sum of `metric`'s samples labelled `path` in a Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(metric + "{") and f'path="{path}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_shared_metrics_directory_only_for_several_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in METRICS_DIR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with shared_metrics(1) as directory:
        assert directory is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with shared_metrics(2) as directory:
        assert directory is not None and os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory
        assert Path(directory).is_dir() and not any(Path(directory).iterdir())
    assert not Path(directory).exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    # A directory the environment names is the operator's: used as it is, and kept.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with shared_metrics(4) as directory:
        assert directory == str(tmp_path)
    assert tmp_path.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_serve_runs_worker_processes_behind_one_port(migrated_database: Database) -> None:
    port = free_port()
    env = {
        **os.environ,
        "VECHAT_DATABASE_URL": migrated_database.app_url,
        "VECHAT_JWT_SECRET": SECRET,
        "VECHAT_POOL_MIN": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vechat_rls.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, lambda: proc.stderr.read() if proc.stderr else "")
        headers = {
            "Authorization": "Bearer "
            + mint_token(organisation_id=9301, user_id=1, user_type="personnel", key=SECRET)
        }
        me = httpx.get(base + "/api/v1/me", headers=headers, timeout=5)
        assert me.status_code == 200 and me.json()["organisation_id"] == 9301
        assert httpx.get(base + "/api/v1/me", timeout=5).status_code == 401
        # /metrics adds up every worker's counts, whichever worker answers the scrape; a new
        # connection per request lets the kernel spread them over both workers.
        for _ in range(HEALTH_REQUESTS):
            assert httpx.get(base + "/healthz", timeout=5).status_code == 200
        for _ in range(6):
            scrape = httpx.get(base + "/metrics", timeout=5)
            assert scrape.status_code == 200
            assert _counted(scrape.text, "vechat_requests_total", "/healthz") == HEALTH_REQUESTS
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with psycopg.connect(migrated_database.admin_url) as conn:
            conn.execute("DELETE FROM vechat_contacts WHERE organisation_id = 9301")


def test_access_tokens_in_urls_are_redacted_from_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/api/v1/ws?since=3&access_token=eyJ.secret.sig"),
        None,
    )
    assert TokenRedactingFilter().filter(record)
    assert "eyJ" not in record.getMessage() and "access_token=***" in record.getMessage()


def test_making_the_app_leaves_the_process_logging_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    create_app(api_settings("postgresql://vechat_app@127.0.0.1:1/none"))
    assert root.handlers == handlers and root.level == level
    assert logging.getLogger("httpx").getEffectiveLevel() == level


def test_served_processes_log_vechat_lines_with_their_time_and_redacted() -> None:
    # A process of its own: applying `log_config` here would reconfigure the test run's logging.
    script = (
        "import logging, logging.config\n"
        "from vechat_rls.api.serving import log_config\n"
        "logging.config.dictConfig(log_config())\n"
        "pace = logging.getLogger('vechat_rls.realtime.pace')\n"
        "pace.info('switch at %s', 'ws?access_token=abc')\n"
        "logging.getLogger('vechat_rls.api.ws').debug('not shown')\n"
        "logging.getLogger('httpx').info('a library line')\n"
    )
    err = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stderr
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO vechat_rls\.realtime\.pace: "
        r"switch at ws\?access_token=\*\*\*",
        lines[0],
    ), lines[0]
