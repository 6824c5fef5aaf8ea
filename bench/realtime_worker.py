"""The realtime benchmark's load generator: one process of WebSockets, driven by bench/realtime.py.

bench/realtime.py starts two of these, `senders` (the personnel's sockets, which send with the
socket's `send` frame) and `receivers` (the clients' sockets, which record every message frame:
end-to-end latency from the scheduled send time in the body, on CLOCK_MONOTONIC, the same clock in
every process; duplicates, seq gaps, resets, closed sockets and error frames). Each socket is a
bench/wsclient.py `LeanWebSocket`, which reads a frame within the event loop's own step.

The orchestrator sends one command per line on stdin, as JSON, and reads one reply line on
stdout, `{"ok": result}` or `{"error": text}`; the process ends when stdin closes:

* `{"cmd": "connect", "targets": [[url, conversation_id], ...]}`: open the sockets (closing any
  before), wait for each one's `ready`;
* `{"cmd": "open_loop", "phase", "rate", "duration", "warmup"}`: senders send at a fixed rate,
  round robin over their sockets;
* `{"cmd": "closed_loop", "phase", "concurrency", "duration", "warmup"}`: senders send as fast
  as acks come back;
* `{"cmd": "collect", "phase", "measure_from", "end"}`: receivers report what arrived;
* `{"cmd": "health"}`, `{"cmd": "close"}`.

    .venv/bin/python bench/realtime_worker.py senders|receivers   # as bench/realtime.py starts it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from harness.meters import event_loop_runner, percentile
from wsclient import LeanWebSocket

ROLES = ("senders", "receivers")
CONNECT_PARALLEL = 25  # sockets a worker opens at once


class _Data(msgspec.Struct):
    id: int = 0
    body: str = ""


class _Incoming(msgspec.Struct):
    type: str
    seq: int = 0
    client_id: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_incoming = msgspec.json.Decoder(_Incoming)
_data = msgspec.json.Decoder(_Data)
_encoder = msgspec.json.Encoder()


def _encode(value: Any) -> str:
    return _encoder.encode(value).decode()



@dataclass
class PhaseStats:
    latencies: list[int] = field(default_factory=list)  # ns, measured sends only
    arrivals: list[int] = field(default_factory=list)  # monotonic ns of every delivery
    ids: set[int] = field(default_factory=set)
    duplicates: int = 0


@dataclass
class Sock:
    url: str
    conversation_id: int
    ws: Any = None
    last_seq: int = 0
    gaps: int = 0
    resets: int = 0
    closed: bool = False
    error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """A set of sockets; senders also send, receivers record what arrives."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.socks: list[Sock] = []
        self.phases: dict[str, PhaseStats] = {}
        self.acks: dict[str, asyncio.Future[int]] = {}
        self.errors = 0
        self.error_sample: str | None = None

    # ---- sockets

    async def connect(self, targets: list[list[Any]]) -> dict[str, Any]:
        await self.close()
        self.socks = [Sock(url, cid) for url, cid in targets]
        limit = asyncio.Semaphore(CONNECT_PARALLEL)
        started = time.perf_counter()

        async def open_one(sock: Sock) -> None:
            async with limit:
                sock.ws = await LeanWebSocket.connect(
                    sock.url, lambda text: self.receive(sock, text),
                    lambda _code: self.closed(sock))
                await asyncio.wait_for(sock.ready.wait(), 60)

        await asyncio.gather(*(open_one(s) for s in self.socks))
        return {"connected": len(self.socks), "seconds": time.perf_counter() - started}

    def receive(self, sock: Sock, text: str) -> None:
        """One frame from the server (called by the socket's protocol, in the same loop step)."""
        try:
            self.record(sock, text)
        except Exception as exc:  # a frame we cannot read: reported as a closed socket
            sock.error = type(exc).__name__
            sock.ws.abort()

    def record(self, sock: Sock, text: str) -> None:
        now = time.monotonic_ns()
        frame = _incoming.decode(text)
        if frame.seq:
            if sock.last_seq and frame.seq != sock.last_seq + 1:
                sock.gaps += 1
            sock.last_seq = frame.seq
            if frame.type == "message.created" and self.role == "receivers":
                data = _data.decode(frame.data)
                phase, scheduled, _n, measured = data.body.split("|")
                s = self.phases.get(phase)
                if s is None:
                    s = self.phases[phase] = PhaseStats()
                if data.id in s.ids:
                    s.duplicates += 1
                    return
                s.ids.add(data.id)
                s.arrivals.append(now)
                if measured == "1":
                    s.latencies.append(now - int(scheduled))
        elif frame.client_id is not None:
            future = self.acks.pop(frame.client_id, None)
            if frame.type != "ack":
                self.errors += 1
                self.error_sample = text[:300]
            if future is not None and not future.done():
                future.set_result(now)
        elif frame.type == "ready":
            sock.last_seq = int(json.loads(bytes(frame.data))["seq"])
            sock.ready.set()
        elif frame.type == "reset":
            sock.resets += 1

    @staticmethod
    def closed(sock: Sock) -> None:
        sock.closed = True
        sock.ready.set()

    async def close(self) -> dict[str, Any]:
        for sock in self.socks:
            if sock.ws is not None:
                with contextlib.suppress(Exception):
                    sock.ws.close()
        await asyncio.sleep(0.1)  # the close frames go out
        closed = sum(s.closed for s in self.socks)
        self.socks = []
        return {"closed": closed}

    def health(self) -> dict[str, Any]:
        return {
            "sockets": len(self.socks),
            "closed": sum(s.closed for s in self.socks),
            "gaps": sum(s.gaps for s in self.socks),
            "resets": sum(s.resets for s in self.socks),
            "errors": self.errors,
            "error_sample": self.error_sample,
        }

    # ---- sending

    async def send(self, sock: Sock, phase: str, n: int, scheduled: int, measured: bool) -> int:
        """Send one message; returns when its ack (or error) frame is back (monotonic ns)."""
        client_id = f"{phase}-{n}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.acks[client_id] = future
        body = f"{phase}|{scheduled}|{n}|{1 if measured else 0}"
        sock.ws.send(_encode({"type": "send", "conversation_id": sock.conversation_id,
                              "client_id": client_id, "body": body}))
        return await asyncio.wait_for(future, 60)

    async def open_loop(self, phase: str, rate: float, duration: float,
                        warmup: float) -> dict[str, Any]:
        start = time.monotonic_ns() + 20_000_000
        measure_from = start + int(warmup * 1e9)
        end = measure_from + int(duration * 1e9)
        total = int(rate * (warmup + duration))
        step = 1e9 / rate
        ack_latencies: list[int] = []
        tasks: set[asyncio.Task[None]] = set()
        failed = 0

        async def one(n: int, scheduled: int) -> None:
            nonlocal failed
            try:
                acked = await self.send(self.socks[n % len(self.socks)], phase, n, scheduled,
                                        scheduled >= measure_from)
            except Exception:
                failed += 1
                return
            if scheduled >= measure_from:
                ack_latencies.append(acked - scheduled)

        behind = 0  # how late the generator itself sent (its own bottleneck, if any)
        for n in range(total):
            scheduled = start + int(n * step)
            delay = (scheduled - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            behind = max(behind, time.monotonic_ns() - scheduled)
            task = asyncio.create_task(one(n, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        return {
            "sent": total, "failed": failed, "measure_from": measure_from, "end": end,
            "ack_p50": percentile(ack_latencies, 50), "ack_p99": percentile(ack_latencies, 99),
            "behind": behind,
        }

    async def closed_loop(self, phase: str, concurrency: int, duration: float,
                          warmup: float) -> dict[str, Any]:
        start = time.monotonic_ns()
        measure_from = start + int(warmup * 1e9)
        end = measure_from + int(duration * 1e9)
        counter = 0
        acked_in_window = 0
        sent = 0
        failed = 0
        # Spread the active senders evenly over organisations and both servers.
        picked = [self.socks[i * len(self.socks) // concurrency] for i in range(concurrency)]

        async def sender(sock: Sock) -> None:
            nonlocal counter, acked_in_window, sent, failed
            while (now := time.monotonic_ns()) < end:
                n = counter
                counter += 1
                sent += 1
                try:
                    acked = await self.send(sock, phase, n, now, now >= measure_from)
                except Exception:
                    failed += 1
                    continue
                if measure_from <= acked <= end:
                    acked_in_window += 1

        await asyncio.gather(*(sender(s) for s in picked))
        return {"sent": sent, "failed": failed, "acked_in_window": acked_in_window,
                "measure_from": measure_from, "end": end,
                "rate": acked_in_window / duration}

    # ---- receiving

    def collect(self, phase: str, measure_from: int, end: int) -> dict[str, Any]:
        s = self.phases.pop(phase, PhaseStats())
        in_window = sum(1 for t in s.arrivals if measure_from <= t <= end)
        return {
            "delivered": len(s.ids), "duplicates": s.duplicates,
            "in_window": in_window, "latencies": s.latencies,
            "last_arrival": max(s.arrivals) if s.arrivals else None,
            **self.health(),
        }


async def worker_main(role: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker(role)

    async def handle(command: dict[str, Any]) -> Any:
        name = command.pop("cmd")
        if name == "connect":
            return await worker.connect(command["targets"])
        if name == "close":
            return await worker.close()
        if name == "open_loop":
            return await worker.open_loop(**command)
        if name == "closed_loop":
            return await worker.closed_loop(**command)
        if name == "collect":
            return worker.collect(**command)
        if name == "health":
            return worker.health()
        raise ValueError(f"unknown command {name!r}")

    while line := await reader.readline():
        try:
            reply = {"ok": await handle(json.loads(line))}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=ROLES, help="which sockets this process holds")
    args = parser.parse_args(argv)
    event_loop_runner()(worker_main(args.role))
    return 0


if __name__ == "__main__":
    sys.exit(main())
