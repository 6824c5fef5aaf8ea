"""`/api/v1/ws`: the WebSocket protocol of contract.md, an edge over chat/ and the realtime hub.

Authentication happens before anything else: the token (header, `?access_token=` or cookie) is
verified first; without a valid one the socket is accepted only to be closed at once with 4401
(a close code is the only answer a browser's WebSocket can read — a refused handshake shows as a
bare 1006), and an open socket is closed 4401 when its token expires. `?since=<seq>` replays
what was missed, then `ready`; `reset` when `since` is older than the retention. Client frames
are decoded by api/frames.py and handled one at a time, in order, each in its own tenant
transaction, through the same chat/ functions as the HTTP routes; an invalid frame gets an
`error` frame, never a crash. Replies go through the socket's outbox (realtime/outbox.py), in
line with its events, so one sender task per socket does all the writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import jwt
import msgspec
from litestar import WebSocket, websocket

from vechat_rls import db
from vechat_rls.api import frames
from vechat_rls.api.problems import failure
from vechat_rls.api.security import AUTH_IN_HANDLER, WS_CLOSE_UNAUTHORIZED, authenticate
from vechat_rls.auth import AuthError, websocket_token
from vechat_rls.chat import presence
from vechat_rls.chat.conversations import read_conversation
from vechat_rls.chat.messages import send_message
from vechat_rls.config import Settings
from vechat_rls.identity import BIGINT_MAX, Identity
from vechat_rls.realtime.engines import Hubs
from vechat_rls.realtime.events import Frame
from vechat_rls.realtime.hub import Hub
from vechat_rls.realtime.outbox import Outbox

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = WS_CLOSE_UNAUTHORIZED  # 4401
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_WAIT_S = 30.0  # a stalled peer gets this long to read up to our close frame


@websocket("/ws", opt={AUTH_IN_HANDLER: True}, name="realtime")
async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Live events, typing, presence and sending over one socket (contract.md, WebSocket)."""
    try:
        identity = authenticate(socket)
    except AuthError:
        await socket.accept()
        await socket.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return
    since_text = socket.query_params.get("since")
    await socket.accept()
    since: int | None = None
    if since_text is not None:
        if not (since_text.isascii() and since_text.isdigit() and int(since_text) <= BIGINT_MAX):
            await socket.send_data(_error("since must be a non-negative integer", 400))
            await socket.close(CLOSE_POLICY, "bad since")
            return
        since = int(since_text)
    hubs: Hubs = socket.app.state.hubs
    settings: Settings = socket.app.state.settings
    try:
        hub = await hubs.acquire(identity)
    except Exception as exc:
        log.warning("realtime: socket not opened (%s)", type(exc).__name__)
        await socket.close(CLOSE_TRY_AGAIN, "try again later")
        return
    try:
        try:
            outbox = await hub.open(identity, since)
        except Exception as exc:
            log.warning("realtime: socket not opened (%s)", type(exc).__name__)
            await socket.close(CLOSE_TRY_AGAIN, "try again later")
            return
        session = _Session(socket, hub, outbox, identity, settings)
        await session.run(_expires_in(socket))
    finally:
        hubs.release(hub)


def _expires_in(socket: WebSocket[Any, Any, Any]) -> float | None:
    """Seconds until the (already verified) token expires: the socket is closed 4401 then."""
    with contextlib.suppress(Exception):
        claims = jwt.decode(websocket_token(socket), options={"verify_signature": False})
        return max(0.0, float(claims["exp"]) - time.time())
    return None


class _Session:
    """One open socket: a sender task draining the outbox, and the client's frames in order."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        hub: Hub,
        outbox: Outbox,
        identity: Identity,
        settings: Settings,
    ) -> None:
        self.socket = socket
        self.hub = hub
        self.outbox = outbox
        self.identity = identity
        self.settings = settings
        self.peer_gone = False

    async def run(self, expires_in: float | None) -> None:
        tasks = [
            asyncio.create_task(self._send_frames()),
            asyncio.create_task(self._receive_frames()),
            asyncio.create_task(self.outbox.closed.wait()),
        ]
        if expires_in is not None:
            tasks.append(asyncio.create_task(self._expire(expires_in)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.close(self.outbox)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not self.peer_gone:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.socket.close(self.outbox.close_code or 1000), CLOSE_WAIT_S
                )

    async def _expire(self, after: float) -> None:
        # A token is good for a connection only as long as for a request; the client reconnects
        # with a fresh one (and `since`).
        await asyncio.sleep(after)
        self.outbox.drop(CLOSE_UNAUTHORIZED)

    async def _send_frames(self) -> None:
        # A peer that stops reading leaves a send waiting here: the hub's watchdog drops the
        # outbox after `ws_send_timeout_s` (closed 1013; resume with since), which ends run().
        outbox = self.outbox
        try:
            while not outbox.closed.is_set():
                text = await outbox.next_frame()
                outbox.sending_since = time.monotonic()
                await self.socket.send_data(text)
                outbox.sending_since = None
        except Exception:
            self.peer_gone = True

    async def _receive_frames(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] != "websocket.receive":
                self.peer_gone = True
                return
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await self._handle(raw)

    async def _handle(self, raw: str | bytes) -> None:
        try:
            frame = frames.decode(raw)
        except frames.InvalidFrame as invalid:
            self.hub.send(self.outbox, _error_frame(invalid.detail, 400, invalid.client_id))
            return
        try:
            reply = await self._answer(frame)
        except Exception as exc:
            status, detail = _problem(exc)
            reply = _error_frame(detail, status, getattr(frame, "client_id", None))
        if reply is not None:
            self.hub.send(self.outbox, reply)

    async def _answer(self, frame: frames.ClientFrame) -> Frame | None:
        match frame:
            case frames.Ping():
                return Frame("pong")
            case frames.Typing(conversation_id=conversation_id, is_typing=is_typing):
                # Typing and presence append no events: their transactions ring nothing.
                async with self._quiet_transaction() as conn:
                    found = await self.hub.typing.announce(
                        conn, self.identity, conversation_id, is_typing
                    )
                return None if found else _not_found(conversation_id)
            case frames.Read():
                return await self._read(frame)
            case frames.Presence(status=status):
                # A status chosen here rings for the peers again, changed or not.
                async with self._quiet_transaction() as conn:
                    await presence.set_presence(conn, self.identity, status)
                    await presence.ring_presence(conn, self.identity)
                return None
            case frames.Send():
                # POST /conversations/{id}/messages's own function, and as strict a body.
                async with db.tenant(self.hub.database, self.identity) as conn:
                    message, _created = await send_message(
                        conn, self.identity, frame.conversation_id, frame, self.settings
                    )
                return Frame("ack", message, frame.client_id)

    def _quiet_transaction(self) -> contextlib.AbstractAsyncContextManager[db.Transaction]:
        return db.tenant(self.hub.database, self.identity, appends_events=False)

    async def _read(self, read: frames.Read) -> Frame | None:
        # POST /conversations/{id}/read's own function: the trigger updates the counter and emits
        # the read receipt (messages.read) and conversation.updated, which arrive as events.
        async with db.tenant(self.hub.database, self.identity) as conn:
            marked = await read_conversation(conn, read.conversation_id, read.up_to_message_id)
        if marked is None:
            return _not_found(read.conversation_id, read.client_id)
        if read.client_id is not None:
            return Frame("ack", {"marked": marked}, read.client_id)
        return None


def _not_found(conversation_id: int, client_id: str | None = None) -> Frame:
    return _error_frame(f"conversation {conversation_id} not found", 404, client_id)


def _error_frame(detail: str, status: int, client_id: str | None = None) -> Frame:
    return Frame("error", {"detail": detail, "status": status}, client_id)


def _error(detail: str, status: int) -> str:
    return msgspec.json.encode(_error_frame(detail, status)).decode()


def _problem(exc: Exception) -> tuple[int, str]:
    """Status and detail of `exc` exactly as the HTTP API would answer it (api/problems.py)."""
    if isinstance(exc, (msgspec.ValidationError, TypeError)):
        return 400, f"invalid frame: {exc}"
    answer = failure(exc)
    return answer.status, answer.detail
