"""What one WebSocket frame costs the server to send, and what a timer per frame adds.

The realtime hub writes every event frame through Litestar's `WebSocket.send_data` under uvicorn
(websockets-sansio), from one sender task per socket (api/ws.py). A stalled peer must not
hold a socket forever, so a send needs a deadline. Two ways to give it one:

* `wait_for`: `asyncio.wait_for(send_data(text), timeout)` around each frame (what the sender did
  until 2026-11-27): a task and a timer per frame;
* `watchdog` (now): the sender notes when a frame started (`Outbox.sending_since`) and one hub task
  drops sockets whose frame has been on its way too long.

This starts a Litestar app under uvicorn in this process and, per variant, a client process (uvloop
+ `websockets`; this script again, as `ws_send.py --client VARIANT --port PORT`) that reads
`--frames` frames of an event's size as fast as it can; the server's own CPU per frame (this
process's CPU time; the client's is its own) is printed, and the ratio of each variant to the
plain send measured in the same run. Variants run in interleaved rounds.

    .venv/bin/python bench/ws_send.py [--frames 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from harness.meters import event_loop_runner
from harness.report import Column, Table
from vechat_rls.pgserver import free_port

FRAME = (
    '{"seq":1234,"type":"message.created","data":{"id":98765,"conversation_id":321,'
    '"sender_id":17,"sender_type":"personnel","receiver_id":17,"receiver_type":"client",'
    '"message_type":"text","body":"' + "x" * 160 + '","client_id":"c-1","read_at":null}}'
)
VARIANTS = ("plain", "watchdog", "wait_for")
TIMEOUT_S = 15.0
RESULTS = Table(Column("variant", 10, left=True, gap=""), Column("us/frame", 9, ".1f"),
                Column("vs plain", 9, ".2f"))


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
        started = time.process_time()
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
        results.setdefault(variant, []).append((time.process_time() - started) / frames * 1e6)
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


async def serve_and_measure(args: argparse.Namespace, results: dict[str, list[float]]) -> None:
    """Each variant's server CPU per frame, round after round, into `results`."""
    import uvicorn

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--client", choices=VARIANTS, metavar="VARIANT",
                        help="be the client process this benchmark starts for each variant")
    parser.add_argument("--port", type=int, help="with --client: the server's port")
    args = parser.parse_args()
    if args.client:
        event_loop_runner()(client(args.port, args.client))
        return 0
    if args.frames < 1 or args.rounds < 1:
        parser.error("--frames and --rounds must be at least 1")
    results: dict[str, list[float]] = {}
    event_loop_runner()(serve_and_measure(args, results))
    plain = statistics.median(results["plain"])
    print(f"server CPU per WebSocket frame of {len(FRAME)} bytes (Litestar + uvicorn "
          f"websockets-sansio), {args.frames} frames, median of {args.rounds} rounds")
    print(RESULTS.header())
    for variant in VARIANTS:
        median = statistics.median(results[variant])
        print(RESULTS.row(variant, median, median / plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
