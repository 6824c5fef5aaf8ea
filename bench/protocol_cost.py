"""What the limits on each client cost per request: uvicorn's httptools protocol with and without.

`serve` runs `LimitedHttpToolsProtocol` (api/protocol.py): uvicorn's `HttpToolsProtocol` plus a
byte count per read while headers are incomplete, a timer armed per request phase (headers, then
body) and a connection count. This drives both classes in this process, one keep-alive
connection over an in-memory transport, with a trivial ASGI app (no Litestar, no database): what
is measured is the protocol's own CPU per request (`time.process_time`), which the HTTP
benchmark's rates on a shared machine are too noisy to show. Two requests: a `GET` and a `POST`
with a 60-byte JSON body (a send's shape, so the body timer is armed too). Variants run in
interleaved rounds; the median round is printed, with the difference in µs per request — to set
against the ~850 to 1,300 µs of API CPU a send costs (`bench/http_api.py`, "CPU us/op").

    .venv/bin/python bench/protocol_cost.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from harness.meters import event_loop_runner
from harness.report import Column, Table, reproduce
from vechat_rls.api.protocol import LimitedHttpToolsProtocol, Limits
from vechat_rls.config import Settings

BODY = b'{"client_id":"bench-1-1","body":"a message of a usual length"}'
REQUESTS = {
    "GET": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
    + b"x" * 400 + b"\r\n\r\n",
    "POST": b"POST /api/v1/conversations/1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer " + b"x" * 400 + b"\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY,
}
VARIANTS = ("uvicorn", "limited")
RESULTS = Table(Column("request", 8, left=True, gap=""), Column("uvicorn us", 11, ".2f"),
                Column("limited us", 11, ".2f"), Column("added us", 9, ".2f"),
                Column("ratio", 7, ".3f"), Column("rounds: added us", left=True, gap="  "))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, answers 200 with two bytes."""
    more = scope["method"] == "POST"
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    """An in-memory socket: counts what the server writes, never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_round(variant: str, request: bytes, count: int, config: Config) -> float:
    """CPU µs per request over `count` requests on one keep-alive connection."""
    state = ServerState()
    if variant == "limited":
        limits = Limits.of(Settings())
        protocol: HttpToolsProtocol = LimitedHttpToolsProtocol(config, state, {}, limits=limits)
    else:
        protocol = HttpToolsProtocol(config, state, {})
    transport = Transport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(count):
        before = transport.written
        protocol.data_received(request)
        while transport.written == before or (
            protocol.cycle is not None and not protocol.cycle.response_complete
        ):
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    assert not transport.closing, "the connection was closed"
    protocol.connection_lost(None)
    return elapsed / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    config = Config(app=app, lifespan="off", access_log=False, log_level="warning")
    config.load()
    results: dict[tuple[str, str], list[float]] = {
        (kind, variant): [] for kind in REQUESTS for variant in VARIANTS}

    async def run() -> None:
        for request in REQUESTS.values():
            for variant in VARIANTS:  # warm-up
                await one_round(variant, request, args.requests // 10, config)
        for number in range(args.rounds):
            for kind, request in REQUESTS.items():
                order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    results[kind, variant].append(
                        await one_round(variant, request, args.requests, config))

    event_loop_runner()(run())
    print(f"vechat-rls protocol cost: uvicorn's HttpToolsProtocol vs LimitedHttpToolsProtocol, "
          f"in-process, {args.requests} keep-alive requests per round, {args.rounds} interleaved "
          f"rounds, CPU time (time.process_time); Python {sys.version.split()[0]}")
    print(f"reproduce: {reproduce(__file__, argv)}")
    print()
    print(RESULTS.header())
    for kind in REQUESTS:
        plain, limited = results[kind, "uvicorn"], results[kind, "limited"]
        added = [b - a for a, b in zip(plain, limited, strict=True)]
        ratios = [b / a for a, b in zip(plain, limited, strict=True)]
        print(RESULTS.row(kind, statistics.median(plain), statistics.median(limited),
                          statistics.median(added), statistics.median(ratios),
                          ", ".join(f"{value:.2f}" for value in added)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
