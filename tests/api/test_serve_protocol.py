"""`vechat-rls serve` at the HTTP protocol level: limits on hostile clients, hang-ups, its logs.

Real `serve` processes (one worker) on the session's database, their standard output and error
in one file. The clients are raw sockets on 127.0.0.1, bounded in bytes and time: huge and slow
headers, stalled and abandoned bodies, too many connections (api/protocol.py, docs/serving.md
"Limits"), and the access log of a URL with a token in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import SECRET, Caller, wait_ready
from tests.support.fixtures import Database
from tests.support.seed import new_organisation_ids
from vechat_rls.pgserver import free_port

MIB = 1024 * 1024
SLOW_CLIENTS = 100
CALLER = Caller(new_organisation_ids(1)[0], 1, "personnel")


class Serve:
    """`vechat-rls serve` with one worker on a free port; stdout and stderr in one file."""

    def __init__(self, database_url: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vechat_rls.cli", "serve", "--port", str(self.port),
             "--workers", "1", *args],
            env={
                **os.environ,
                "VECHAT_DATABASE_URL": database_url,
                "VECHAT_JWT_SECRET": SECRET,
                "VECHAT_POOL_MIN": "0",
                **env,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(self.base, self.proc, self.output)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        print(f"--- serve on port {self.port} ---\n{self.output()}")  # shown when a test failed


@contextlib.contextmanager
def serving(database: Database, *args: str, **env: str) -> Iterator[Serve]:
    """A `Serve` for the block; `args` are more `serve` flags, `env` more variables."""
    server = Serve(database.app_url, *args, **env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(migrated_database: Database) -> Iterator[Serve]:
    """Short timeouts, so that the tests wait seconds; the default header size limit; the
    access log on (serve's default is off)."""
    with serving(
        migrated_database,
        "--access-log",
        VECHAT_HEADER_TIMEOUT_S="1",
        VECHAT_BODY_TIMEOUT_S="1",
        VECHAT_KEEPALIVE_TIMEOUT_S="1",
    ) as s:
        yield s


def read_answer(sock: socket.socket, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout`)."""
    sock.settimeout(timeout)
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def problem_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), head
    problem: dict[str, object] = json.loads(body)
    return problem


# --- header size --------------------------------------------------------------------------------


def _send_huge_header_line(server: Serve, total: int, sent: list[int]) -> None:
    """Up to `total` bytes of one header line, never ending it; records how much got out."""
    count = 0
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
        chunk = b"a" * 65536
        with contextlib.suppress(OSError):
            while count < total:
                sock.sendall(chunk)
                count += len(chunk)
    sent.append(count)


def test_huge_header_lines_are_cut_without_growing_the_servers_memory(server: Serve) -> None:
    """Five clients each sending 20 MiB of one header line: each is cut once it is past the
    limit, and the server's RSS stays where it was (unbounded, it took ~140 MiB more)."""
    before = server.rss_mib()
    sent: list[int] = []
    clients = [
        threading.Thread(target=_send_huge_header_line, args=(server, 20 * MIB, sent))
        for _ in range(5)
    ]
    peak = before
    for client in clients:
        client.start()
    deadline = time.monotonic() + 60
    while any(c.is_alive() for c in clients) and time.monotonic() < deadline:
        peak = max(peak, server.rss_mib())
        time.sleep(0.02)
    for client in clients:
        client.join(timeout=10)
    peak = max(peak, server.rss_mib())
    assert peak - before < 16, f"RSS {before:.0f} MiB before, {peak:.0f} MiB at the peak"
    # What a client got out before the cut is what the kernel's buffers took: not 20 MiB.
    assert len(sent) == 5 and all(count < 20 * MIB for count in sent), sent
    assert "Traceback" not in server.output()


def test_a_whole_header_block_over_the_limit_is_431(server: Serve) -> None:
    """Sent in one piece, with its end: answered 431 as a problem, not served."""
    with server.connect() as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: "
            + b"a" * (40 * 1024)
            + b"\r\n\r\n"
        )
        answer = read_answer(sock)
    assert status_of(answer) == 431
    assert problem_of(answer)["type"] == "urn:vechat:problem:header-fields-too-large"


def test_headers_under_the_limit_are_served(server: Serve) -> None:
    response = httpx.get(server.base + "/healthz", headers={"X-Filler": "a" * (30 * 1024)})
    assert response.status_code == 200


def test_the_serve_flags_win_over_the_variables(migrated_database: Database) -> None:
    """`--max-header-bytes` and `--max-connections` over their VECHAT_* variables."""
    with serving(
        migrated_database,
        "--max-header-bytes", "4096",
        "--max-connections", "3",
        VECHAT_MAX_HEADER_BYTES="65536",
        VECHAT_MAX_CONNECTIONS="100",
    ) as flagged:
        filler = {"X-Filler": "a" * 5000}
        assert httpx.get(flagged.base + "/healthz", headers=filler).status_code == 431
        held = [flagged.connect() for _ in range(3)]
        try:
            time.sleep(0.2)
            with flagged.connect() as sock:
                assert status_of(read_answer(sock)) == 503
        finally:
            for sock in held:
                sock.close()


# --- time --------------------------------------------------------------------------------------


def test_slow_headers_are_cut_after_the_header_timeout(server: Serve) -> None:
    """A header line every 0.3 s would keep a connection forever: cut 1 s after its first byte
    with 408, all of them, and what they held is given back."""
    before = server.rss_mib()
    socks = [server.connect() for _ in range(SLOW_CLIENTS)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    open_socks = list(socks)
    line = 0
    while open_socks and time.monotonic() - started < 5:
        time.sleep(0.3)
        line += 1
        still = []
        for sock in open_socks:
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % line)
                still.append(sock)
            except OSError:
                pass
        open_socks = still
    try:
        answers = [read_answer(sock, timeout=3) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert time.monotonic() - started < 8
    assert [status_of(answer) for answer in answers] == [408] * SLOW_CLIENTS
    after = server.rss_mib()
    assert after - before < 16, f"RSS {before:.0f} MiB before, {after:.0f} MiB after"


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Serve) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        assert read_answer(sock, timeout=5) == b""
        assert time.monotonic() - started < 4


def test_a_stalled_body_is_408_and_logged_without_a_traceback(server: Serve) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"PATCH /api/v1/settings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: {CALLER.headers['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + b'{"theme": '
        )
        answer = read_answer(sock, timeout=5)
    assert status_of(answer) == 408
    time.sleep(0.3)
    log = server.output()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout(
    server: Serve,
) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        answer = read_answer(sock, timeout=4)
        assert status_of(answer) == 200
        assert time.monotonic() - started < 3  # closed after ~1 s, not uvicorn's default 5 s


# --- connections -------------------------------------------------------------------------------


def test_connections_over_the_limit_get_503_and_are_closed(migrated_database: Database) -> None:
    with serving(migrated_database, VECHAT_MAX_CONNECTIONS="5") as crowded:
        held = [crowded.connect() for _ in range(5)]
        try:
            time.sleep(0.2)
            with crowded.connect() as sock:
                answer = read_answer(sock)
            assert status_of(answer) == 503
            assert b"retry-after: 1" in answer.lower()
            assert problem_of(answer)["type"] == "urn:vechat:problem:service-unavailable"
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(crowded.base + "/healthz", timeout=5).status_code == 200


# --- logs --------------------------------------------------------------------------------------


def test_a_client_hanging_up_mid_body_is_one_info_line_without_a_traceback(
    server: Serve,
) -> None:
    mark = len(server.output())
    for _ in range(3):
        with server.connect() as sock:
            sock.sendall(
                b"PATCH /api/v1/settings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: {CALLER.headers['Authorization']}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                + b'{"theme": '
            )
    deadline = time.monotonic() + 5
    while server.output()[mark:].count("went away") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.output()[mark:]
    assert log.count("went away before sending its whole request") == 3, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert all("INFO" in line for line in log.splitlines() if "went away" in line), log


def test_the_access_log_keeps_its_line_with_the_token_redacted(server: Serve) -> None:
    """The redacting filter must leave uvicorn's access format its arguments: before, every
    sign-in link printed `--- Logging error ---` and lost its access line."""
    token = CALLER.headers["Authorization"].removeprefix("Bearer ")
    mark = len(server.output())
    response = httpx.get(f"{server.base}/healthz?access_token={token}&x=1", timeout=5)
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while "GET /healthz" not in server.output()[mark:] and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.output()[mark:]
    assert '"GET /healthz?access_token=***&x=1 HTTP/1.1" 200' in log, log
    assert "Logging error" not in log and token not in log, log
