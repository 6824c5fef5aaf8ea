"""A trivial stand-in for the servers: the realtime benchmark's generator ceiling.

bench/realtime.py measures first what its generator alone can drive: it connects the same sockets
to this process instead of `vechat-rls serve`, and sends as fast as it can. Each `send` frame is
answered as the server answers it, with nothing behind: an `ack`, the `message.created` frame to
the sender's socket, and the same frame to the socket of the conversation's receiver. A socket
connects as `ws://127.0.0.1:PORT/?c=CONVERSATION_ID&r=1` (receiver) or `r=0` (sender), and gets
`ready` at once.

    .venv/bin/python bench/realtime_relay.py PORT   # as bench/realtime.py starts it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection, serve

from harness.meters import event_loop_runner

_encoder = msgspec.json.Encoder()


async def relay(port: int) -> None:
    receivers: dict[int, ServerConnection] = {}
    seqs: dict[ServerConnection, int] = {}
    next_id = 0

    def frame(ws: ServerConnection, kind: str, data: dict[str, Any]) -> str:
        seqs[ws] += 1
        return _encoder.encode({"seq": seqs[ws], "type": kind, "data": data}).decode()

    async def handler(ws: ServerConnection) -> None:
        nonlocal next_id
        query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
        conversation_id, receiving = int(query["c"][0]), query["r"][0] == "1"
        seqs[ws] = 0
        if receiving:
            receivers[conversation_id] = ws
        await ws.send('{"type":"ready","data":{"seq":0}}')
        async for text in ws:
            sent = json.loads(text)
            next_id += 1
            data = {"id": next_id, "body": sent["body"]}
            await ws.send(_encoder.encode(
                {"type": "ack", "data": data, "client_id": sent["client_id"]}).decode())
            await ws.send(frame(ws, "message.created", data))
            peer = receivers.get(sent["conversation_id"])
            if peer is not None:
                with contextlib.suppress(Exception):
                    await peer.send(frame(peer, "message.created", data))

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None,
                     max_queue=None):
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="where to listen on 127.0.0.1")
    args = parser.parse_args(argv)
    event_loop_runner()(relay(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
