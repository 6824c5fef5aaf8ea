"""What hostile clients cost a `vechat-rls serve` process: its RSS, and whether it cuts them.

Starts its own PostgreSQL (not durable: nothing here measures commits), migrates it, and starts
`vechat-rls serve` (one worker) — with `--ab-src DIR`, a second one from another source tree
(e.g. `git archive <commit> | tar -x -C DIR`), measured the same way in the same run. Against
each, all on 127.0.0.1 and bounded in bytes and time:

* **huge headers**: five connections, each sending up to 20 MiB of one header line and never
  finishing the headers; the server's RSS before, at its peak while they send, and after;
* **a complete 10 MB header**: the status it gets (431 with limits, 200 without);
* **slow headers**: 300 connections sending a header line every 5 s; how many are still open
  after `--slow-s` seconds (default 30).

    .venv/bin/python bench/hostile_clients.py [--ab-src DIR] [--slow-s 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from harness.cluster import app_url, migrated_database, private_cluster, workdir
from harness.meters import rss_mib
from harness.report import reproduce
from harness.servers import ApiServer

MIB = 1024 * 1024
HUGE_CLIENTS = 5
HUGE_BYTES = 20 * MIB
CHUNK = 64 * 1024
SLOW_CLIENTS = 300
SLOW_EVERY_S = 5.0


def huge_header(port: int, total: int, stop: threading.Event) -> int:
    """Send `total` bytes of one header line (never ending the headers); the bytes sent before
    the server cut the connection (or all of them)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
        chunk = b"a" * CHUNK
        try:
            while sent < total and not stop.is_set():
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
    return sent


def complete_header_status(port: int, size: int) -> str:
    """The status line answered to a request with one header of `size` bytes, sent whole."""
    request = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * size
               + b"\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request)
        try:
            answer = sock.recv(200)
        except OSError as exc:
            return f"connection error ({type(exc).__name__})"
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed without an answer"


def slow_headers(port: int, seconds: float) -> tuple[int, int]:
    """SLOW_CLIENTS connections each sending a header line every SLOW_EVERY_S; after `seconds`,
    (still open, opened)."""
    socks = []
    for _ in range(SLOW_CLIENTS):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(sock)
    opened = len(socks)
    deadline = time.monotonic() + seconds
    line = 0
    open_ones = list(socks)
    while time.monotonic() < deadline:
        time.sleep(min(SLOW_EVERY_S, max(0.0, deadline - time.monotonic())))
        line += 1
        still = []
        for sock in open_ones:
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % line)
                still.append(sock)
            except OSError:
                sock.close()
        open_ones = still
    # A closed connection shows when we read: the server's answer, or EOF.
    alive = 0
    for sock in open_ones:
        sock.setblocking(False)
        try:
            sock.recv(1)  # an answer (408) or EOF: the server has closed it
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        sock.close()
    return alive, opened


def worker_pid(server: ApiServer) -> int:
    pids = server.pids()
    return pids[-1]  # one worker: uvicorn serves in the process itself, or in its one child


def measure(server: ApiServer, slow_s: float) -> list[str]:
    pid = worker_pid(server)
    before = rss_mib(pid)
    stop = threading.Event()
    peak = before
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(huge_header(server.port, HUGE_BYTES, stop)))
        for _ in range(HUGE_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    time.sleep(1.0)
    after = rss_mib(pid)
    sent = sorted(results)
    lines = [
        f"  huge headers ({HUGE_CLIENTS} x up to {HUGE_BYTES // MIB} MiB): RSS {before:.0f} MiB"
        f" before, peak {peak:.0f} MiB, {after:.0f} MiB after; bytes each client got to send"
        f" before it was cut: {', '.join(f'{s / MIB:.2f} MiB' for s in sent)}",
        f"  a complete 10 MB header: {complete_header_status(server.port, 10 * 1000 * 1000)}",
    ]
    alive, opened = slow_headers(server.port, slow_s)
    lines.append(f"  slow headers: {alive} of {opened} connections still open after {slow_s:g} s"
                 f" (a header line every {SLOW_EVERY_S:g} s); RSS then {rss_mib(pid):.0f} MiB")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ab-src", metavar="DIR",
                        help="also measure a serve from this source tree (its src/ is used)")
    parser.add_argument("--slow-s", type=float, default=30.0,
                        help="how long the slow clients keep sending")
    args = parser.parse_args(argv)
    with workdir("hostile") as work, private_cluster(work, durable=False) as pg:
        admin_url = migrated_database(pg)
        servers = {"this tree": ApiServer("this tree", app_url(admin_url), 1,
                                          work / "serve-this.log")}
        if args.ab_src:
            source = Path(args.ab_src).resolve() / "src"
            path = os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])
            servers[args.ab_src] = ApiServer("base", app_url(admin_url), 1,
                                             work / "serve-base.log", env={"PYTHONPATH": path})
        print(f"vechat-rls hostile clients: {os.cpu_count()} CPUs (shared machine), one worker"
              f" per server, loopback only\nreproduce: {reproduce(__file__, argv)}")
        for label, server in servers.items():
            server.start()
            try:
                server.wait_ready()
                print(f"{label}:")
                for line in measure(server, args.slow_s):
                    print(line, flush=True)
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
