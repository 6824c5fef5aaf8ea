"""`vechat-rls serve` processes a benchmark starts and stops, and the tokens its users present."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.meters import children
from vechat_rls.auth import mint_token
from vechat_rls.pgserver import free_port

JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"
RATE_LIMIT = 1_000_000_000  # VECHAT_RATE_LIMIT_PER_MIN: its statement runs, it never answers 429
POOL_MAX = 10  # per server process, the Settings default


def token(organisation_id: int, user_id: int, user_type: str, name: str | None = None) -> str:
    """A day-long token the benchmark's servers accept."""
    return mint_token(organisation_id=organisation_id, user_id=user_id, user_type=user_type,
                      key=JWT_SECRET, name=name, ttl_s=24 * 3600)


def vechat_rls_command() -> list[str]:
    script = Path(sys.executable).with_name("vechat-rls")
    if script.exists():
        return [str(script)]
    found = shutil.which("vechat-rls")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from vechat_rls.cli import main; sys.exit(main())"]


def wait_for_port(port: int, timeout: float = 10) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)


@dataclass
class ApiServer:
    """One `vechat-rls serve` (with its workers), started and stopped by the benchmark only."""

    label: str
    database_url: str
    workers: int | None  # None: serve's default (one per usable CPU)
    log_path: Path
    privileged: bool = False  # --allow-privileged-role: the BYPASSRLS role
    access_log: bool | None = None  # None: serve's default (off); else --[no-]access-log
    env: dict[str, str] = field(default_factory=dict)  # more VECHAT_* settings
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        argv = [*vechat_rls_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        if self.access_log is not None:
            argv.append("--access-log" if self.access_log else "--no-access-log")
        return argv + (["--allow-privileged-role"] if self.privileged else [])

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "VECHAT_DATABASE_URL": self.database_url,
            "VECHAT_JWT_SECRET": JWT_SECRET,
            "VECHAT_RATE_LIMIT_PER_MIN": str(RATE_LIMIT),
            "VECHAT_POOL_MAX": str(POOL_MAX),
            **self.env,
        }
        with self.log_path.open("wb") as log:
            # Its own session: uvicorn's supervisor and workers are ours to stop as one group.
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/readyz", timeout=2
            ) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The supervisor and its worker processes."""
        assert self.proc is not None
        return [self.proc.pid, *children(self.proc.pid)]

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this benchmark created
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def start_all(servers: list[ApiServer]) -> None:
    """Start every server, then wait until each is ready (they start side by side)."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()
