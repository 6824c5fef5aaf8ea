"""A lean WebSocket client for the load generator: one callback per text frame, no task per frame.

The realtime benchmark's generator shares the machine's two cores with the servers and
PostgreSQL, so whatever it spends receiving a frame is taken from the servers. `websockets`'
asyncio client wakes a reader task for every frame (a future, a queue, a task switch): measured
in the benchmark at ~50 us of the generator's CPU per frame when frames arrive one at a time over
1,000 sockets. This client parses frames in `data_received` and hands each text frame to a plain
callback, in the same event-loop step.

Enough of RFC 6455 for talking to our own server over 127.0.0.1: the opening handshake (checked:
101 and the Sec-WebSocket-Accept of our key), masked text frames out, unmasked frames in
(text, fragmented text, ping answered with pong, close answered and ended), no extensions.
A module, not a script: bench/realtime_worker.py uses it; tests/bench/test_bench_wsclient.py
tests it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class HandshakeError(Exception):
    """The server did not switch protocols."""


class LeanWebSocket(asyncio.Protocol):
    """A client connection; `on_text(text)` runs for every text message, `on_close(code)` once."""

    def __init__(self, on_text: Callable[[str], None],
                 on_close: Callable[[int | None], None]) -> None:
        self.on_text = on_text
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.key = base64.b64encode(os.urandom(16))
        self.closed = False

    @classmethod
    async def connect(cls, url: str, on_text: Callable[[str], None],
                      on_close: Callable[[int | None], None], timeout: float = 60) -> LeanWebSocket:
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
            raise ValueError(f"a ws://host:port/ URL is needed, got {url!r}")
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_connection(
            lambda: cls(on_text, on_close), parts.hostname, parts.port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        assert protocol.transport is not None
        protocol.transport.write(
            f"GET {target or '/'} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {protocol.key.decode()}\r\n\r\n".encode())
        await asyncio.wait_for(protocol.handshake, timeout)
        return protocol

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshake.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 4:]
            # RFC 6455 4.2.2 names SHA-1 for the accept value (a handshake check, not security).
            accept = base64.b64encode(hashlib.sha1(self.key + GUID, usedforsecurity=False).digest())
            if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                self.handshake.set_exception(HandshakeError(head.split(b"\r\n", 1)[0].decode()))
                self.abort()
                return
            self.handshake.set_result(None)
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))
        self._ended(None)

    # ---- frames

    def _frames(self) -> None:
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= 2:
            first, length = buffer[at], buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if len(buffer) - at < 4:
                    break
                length = struct.unpack_from("!H", buffer, at + 2)[0]
                start = at + 4
            elif length == 127:
                if len(buffer) - at < 10:
                    break
                length = struct.unpack_from("!Q", buffer, at + 2)[0]
                start = at + 10
            if len(buffer) - start < length:
                break
            payload = bytes(buffer[start:start + length])
            at = start + length
            self._frame(first & 0x80, first & 0x0F, payload)
        del buffer[:at]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == TEXT and fin:
            self.on_text(payload.decode())
        elif opcode in (TEXT, CONTINUATION):
            self.fragments.append(payload)
            if fin:
                text, self.fragments = b"".join(self.fragments).decode(), []
                self.on_text(text)
        elif opcode == PING:
            self._write(PONG, payload)
        elif opcode == CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
            if not self.closed:
                self._write(CLOSE, payload[:2])
            self._ended(code)
            if self.transport is not None:
                self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the WebSocket is closed")
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload) ^ int.from_bytes(repeated)).to_bytes(n)
        self.transport.write(head + mask + masked)

    def _ended(self, code: int | None) -> None:
        if not self.closed:
            self.closed = True
            self.on_close(code)

    # ---- the caller's side

    def send(self, text: str) -> None:
        self._write(TEXT, text.encode())

    def close(self, code: int = 1000) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            self._write(CLOSE, struct.pack("!H", code))
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
