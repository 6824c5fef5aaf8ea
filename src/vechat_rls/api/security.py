"""Bearer token → `Identity` for every `/api/v1` route: the guard, and registry mode's verifier."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import WebSocketException
from litestar.handlers.base import BaseRouteHandler

from vechat_rls.auth import AuthError, TokenVerifier, http_token, websocket_token
from vechat_rls.fleet import Fleet
from vechat_rls.identity import Identity

log = logging.getLogger(__name__)

AUTH_IN_HANDLER = "vechat_auth_in_handler"
"""Route `opt` key: a WebSocket handler that authenticates itself (to accept, then close 4401)."""

WS_CLOSE_UNAUTHORIZED = 4401  # contract.md: bad token on the WebSocket


def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Identity:
    """The caller's identity, verified once per connection and kept in `scope["user"]`.

    HTTP reads `Authorization: Bearer` only; a WebSocket handshake also `?access_token=` and the
    cookie `access_token`. Raises `AuthError` (→ 401, or close 4401 on a WebSocket), also for a
    valid token of an organisation the registry does not place (registry mode).
    """
    cached = connection.scope.get("user")
    if isinstance(cached, Identity):
        return cached
    verifier: Verifier = connection.app.state.verifier
    if connection.scope["type"] == ScopeType.WEBSOCKET:
        token = websocket_token(connection)
    else:
        token = http_token(connection)
    identity = verifier.verify(token)
    connection.scope["user"] = identity
    return identity


class Verifier(Protocol):
    def verify(self, token: str) -> Identity: ...


class PlacedVerifier:
    """Registry mode's verifier: a valid token counts only if the registry places its
    organisation (an entry lists it, or there is a `["*"]` entry); otherwise `AuthError` (401,
    or 4401 on a socket), logged with the organisation id and never the token. With one
    database the app keeps the plain `TokenVerifier`, so that path does no more than before."""

    def __init__(self, verifier: TokenVerifier, fleet: Fleet) -> None:
        self.verifier = verifier
        self.fleet = fleet

    def verify(self, token: str) -> Identity:
        identity = self.verifier.verify(token)
        if not self.fleet.serves(identity.organisation_id):
            log.warning(
                "refused organisation %s: not served here (no registry entry places it)",
                identity.organisation_id,
            )
            raise AuthError(f"organisation {identity.organisation_id} is not served here")
        return identity


async def require_identity(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Router guard: no `/api/v1` handler runs without a verified token.

    A refused WebSocket handshake is closed with code 4401. Before `accept()` most servers turn
    that close into an HTTP 403; a handler that must deliver 4401 to browsers sets
    `opt={AUTH_IN_HANDLER: True}`, accepts, then calls `authenticate()` and closes on `AuthError`.
    """
    if handler.opt.get(AUTH_IN_HANDLER):
        return
    try:
        authenticate(connection)
    except AuthError as exc:
        if connection.scope["type"] == ScopeType.WEBSOCKET:
            raise WebSocketException(detail=exc.reason, code=WS_CLOSE_UNAUTHORIZED) from None
        raise
