"""The realtime benchmark's lean WebSocket client (bench/wsclient.py) against a real server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.support.bench import load_bench_module

wsclient = load_bench_module("wsclient.py", "bench_wsclient")


async def test_frames_of_every_length_both_ways_pings_and_the_close_code() -> None:
    big = "é" * 70_000  # 140 kB in UTF-8: a 64-bit length

    async def echo(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.send(big)
        async for text in ws:
            assert isinstance(text, str)
            await ws.send(f"{len(text)}:{text[:3]}")
            if text == "bye":
                await ws.close(4000, "done")

    got: list[str] = []
    closed: list[int | None] = []
    async with serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=1) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ws = await wsclient.LeanWebSocket.connect(f"ws://127.0.0.1:{port}/path?x=1", got.append,
                                                  closed.append)
        for text in ("a" * 100, "b" * 300, "c" * 70_000):  # 7-, 16- and 64-bit lengths
            ws.send(text)
        # The server pings every 50 ms and gives up 1 s after a ping without pong (1011).
        await asyncio.sleep(1.5)
        ws.send("bye")
        async with asyncio.timeout(5):
            while not closed:
                await asyncio.sleep(0.01)
    assert got == ["hello", big, "100:aaa", "300:bbb", "70000:ccc", "3:bye"]
    assert closed == [4000]


async def test_a_refused_upgrade_is_an_error() -> None:
    async def http_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http_only, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(wsclient.HandshakeError, match="403"):
            await wsclient.LeanWebSocket.connect(f"ws://127.0.0.1:{port}/", print, print)
