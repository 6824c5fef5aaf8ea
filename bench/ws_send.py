"""What one WebSocket frame costs the server to send, and what a timer per frame adds.

The realtime hub writes every event frame through Litestar's `WebSocket.send_data` under uvicorn
(websockets-sansio), from one sender task per socket (realtime/ws.py). A stalled peer must not
hold a socket forever, so a send needs a deadline. Two ways to give it one:

* `wait_for`: `asyncio.wait_for(send_data(text), timeout)` around each frame (what the sender did
  until 2026-11-27): a task and a timer per frame;
* `watchdog` (now): the sender notes when a frame started (`Outbox.sending_since`) and one hub task
  drops sockets whose frame has been on its way too long.

This starts a Litestar app under uvicorn in this process and, per variant, a client process (uvloop
+ `websockets`) that reads `--frames` frames of an event's size as fast as it can; the server's own
CPU per frame (getrusage of this process, the client's is its own) is printed, and the ratio of
each variant to the plain send measured in the same run. Variants run in interleaved rounds.

    .venv/bin/python bench/ws_send.py [--frames 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import sys
import time
from typing import Any

FRAME = (
    '{"seq":1234,"type":"message.created","data":{"id":98765,"conversation_id":321,'
    '"sender_id":17,"sender_type":"personnel","receiver_id":17,"receiver_type":"client",'
    '"message_type":"text","body":"' + "x" * 160 + '","client_id":"c-1","read_at":null}}'
)
VARIANTS = ("plain", "watchdog", "wait_for")
TIMEOUT_S = 15.0


def cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def make_app(frames: int, results: dict[str, list[float]]) -> Any:
    from litestar import Litestar, WebSocket, websocket

    class Outbox:
        sending_since: float | None = None

    @websocket("/ws/{variant:str}")
    async def sender(socket: WebSocket[Any, Any, Any], variant: str) -> None:
        await socket.accept()
        queue: asyncio.Queue[str] = asyncio.Queue()
        for _ in range(frames):
            queue.put_nowait(FRAME)
        outbox = Outbox()
        started = cpu_s()
        while not queue.empty():
            text = await queue.get()
            if variant == "wait_for":
                await asyncio.wait_for(socket.send_data(text), TIMEOUT_S)
            elif variant == "watchdog":
                outbox.sending_since = time.monotonic()
                await socket.send_data(text)
                outbox.sending_since = None
            else:
                await socket.send_data(text)
        results.setdefault(variant, []).append((cpu_s() - started) / frames * 1e6)
        await socket.send_data("done")
        await socket.close()

    return Litestar([sender])


async def client(port: int, variant: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/{variant}", max_queue=None,
                       compression=None) as ws:
        async for text in ws:
            if text == "done":
                return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_and_measure(args: argparse.Namespace) -> dict[str, list[float]]:
    import uvicorn

    results: dict[str, list[float]] = {}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(args.frames, results), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", variant, "--port", str(port))
                if await proc.wait() != 0:
                    raise RuntimeError(f"the {variant} client failed")
    finally:
        server.should_exit = True
        await serving
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--client", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.client:
        uvloop.run(client(args.port, args.client))
        return 0
    if args.frames < 1 or args.rounds < 1:
        parser.error("--frames and --rounds must be at least 1")
    results = uvloop.run(serve_and_measure(args))
    plain = statistics.median(results["plain"])
    print(f"server CPU per WebSocket frame of {len(FRAME)} bytes (Litestar + uvicorn "
          f"websockets-sansio), {args.frames} frames, median of {args.rounds} rounds")
    print(f"{'variant':10} {'us/frame':>9} {'vs plain':>9}")
    for variant in VARIANTS:
        median = statistics.median(results[variant])
        print(f"{variant:10} {median:9.1f} {median / plain:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
