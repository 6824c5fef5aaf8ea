"""The HTTP/1.1 protocol `serve` runs: uvicorn's httptools protocol, with limits on each client.

uvicorn reads as long as a client sends: httptools buffers a header line of any size whole, a
client may take forever to finish its headers or its body, and every connection is accepted.
`LimitedHttpToolsProtocol` adds what it lacks, per connection (docs/serving.md, "Limits"):

* **header size**: more than `max_header_bytes` of request line and headers → 431 and close, as
  soon as that much has arrived (what is buffered stays within one read of the limit);
* **header time**: a request's headers not complete `header_timeout_s` after its first byte (or
  after the connection opened) → 408 and close (a connection that sent nothing is just closed);
* **body time**: no byte of a request body for `body_timeout_s` while the client owes some → 408
  and close (not while the server itself has stopped reading);
* **connections**: more than `max_connections` open in this process, WebSockets included → 503
  with `Retry-After` and close, at once.

The idle time between two requests of a keep-alive connection is uvicorn's own
`timeout_keep_alive`. Everything here happens before the app sees a request: the answers are
problem details written on the socket, and each refusal is one log line without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from vechat_rls.api.problems import PROBLEM_JSON, problem_type
from vechat_rls.config import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # told to a client refused for want of connections


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may hold of a server process (the `VECHAT_*` settings of the same names)."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
        )


class _Throttled:
    """At most one log line per kind of refusal a second, with how many were not logged: a flood
    of bad clients must not become a flood of log lines."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._quiet: dict[int, int] = {}

    def info(self, status: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(status, -1.0) < 1.0:
            self._quiet[status] = self._quiet.get(status, 0) + 1
            return
        self._last[status] = now
        quiet = self._quiet.pop(status, 0)
        suffix = f" (and {quiet} more like it in the last second)" if quiet else ""
        log.info(message + suffix, *args)


_refusals = _Throttled()


def _problem_bytes(status: int, detail: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = {"type": problem_type(status), "title": phrase, "status": status, "detail": detail}
    return msgspec.json.encode(body)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded by `limits` (one instance per connection)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._reading_headers = True  # from the connection or a request's end to its headers' end
        self._header_bytes = 0  # received while reading headers (a read may run into the body)
        self._deadline: asyncio.TimerHandle | None = None

    # --- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _refusals.info(
                503,
                "refused a connection from %s: %d connections are open (VECHAT_MAX_CONNECTIONS)",
                self._peer(),
                self.limits.max_connections,
            )
            self._answer_and_close(
                503, "too many connections, retry later", b"retry-after: %d\r\n" % RETRY_AFTER_S
            )
            return
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            if self._deadline is None:  # the first byte of a keep-alive connection's next request
                self._arm(self.limits.header_timeout_s)
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_headers
            and self._header_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            # Still no end of headers: whatever arrived so far is request line and headers.
            self._too_large()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the socket is the WebSocket protocol's from here on
        super().handle_websocket_upgrade()

    # --- httptools' callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._disarm()
        if self._header_bytes > self.limits.max_header_bytes and self._header_size() > (
            self.limits.max_header_bytes
        ):
            # The headers ended within the read that took them over the limit: answered through
            # the request cycle like any request (its body, if any, is read and dropped).
            _refusals.info(
                431, "refused a request from %s: headers over %d bytes (VECHAT_MAX_HEADER_BYTES)",
                self._peer(), self.limits.max_header_bytes,
            )
            app, self.app = self.app, _headers_too_large
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()
        self._header_bytes = 0
        self._arm(self.limits.body_timeout_s)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._reading_headers = True
        self._header_bytes = 0

    # --- limits --------------------------------------------------------------------------------

    def _header_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _arm(self, after_s: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(after_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._reading_headers:
            if not self._header_bytes:
                self.transport.close()  # opened and never used: nothing to answer
                return
            _refusals.info(
                408, "closed a connection from %s: its request headers took over %g s "
                "(VECHAT_HEADER_TIMEOUT_S)", self._peer(), self.limits.header_timeout_s,
            )
            self._answer_and_close(408, "the request's headers took too long")
            return
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The server is not reading (the app has not asked for more): not the client's delay.
            self._arm(self.limits.body_timeout_s)
            return
        _refusals.info(
            408, "closed a connection from %s: no byte of its request body for %g s "
            "(VECHAT_BODY_TIMEOUT_S)", self._peer(), self.limits.body_timeout_s,
        )
        if cycle is not None and cycle.response_started:
            self._close()
        else:
            self._answer_and_close(408, "the request body took too long")

    def _too_large(self) -> None:
        _refusals.info(
            431, "refused a request from %s: headers over %d bytes (VECHAT_MAX_HEADER_BYTES)",
            self._peer(), self.limits.max_header_bytes,
        )
        self._answer_and_close(
            431, f"the request line and headers are over {self.limits.max_header_bytes} bytes"
        )

    def _answer_and_close(self, status: int, detail: str, headers: bytes = b"") -> None:
        body = _problem_bytes(status, detail)
        head = b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
        self.transport.write(
            head
            + b"content-type: " + PROBLEM_JSON.encode() + b"\r\n"
            + b"content-length: %d\r\n" % len(body)
            + headers
            + b"connection: close\r\n\r\n"
            + body
        )
        self._close()

    def _close(self) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            # The app, if it is still at this request, hears a disconnect and writes nothing more.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


async def _headers_too_large(scope: Any, receive: Any, send: Any) -> None:
    """The answer to a request whose headers were over the limit (an ASGI app of its own)."""
    body = _problem_bytes(431, "the request line and headers are over the limit")
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
