"""The Litestar application: routes, lifespans, errors, limits, OpenAPI and metrics in one place.

Adding a resource: write `api/<resource>.py` with one `Controller` and add it to `CONTROLLERS`.
Its handlers may ask for `identity: IdentityDep`, `conn: ConnDep` (the request's tenant
transaction, READ ONLY for GET/HEAD), `database: DatabaseDep` (to open transactions themselves)
and `settings: SettingsDep` (api/dependencies.py). Every route under `/api/v1` requires a valid
token.
JSON bodies (`data: JSONBody[XCreate]`) are decoded strictly (api/body.py). Bodies are limited to
`VECHAT_MAX_BODY_BYTES`; a controller that takes more names its setting in the class attribute
`body_limit_setting` (e.g. `"max_upload_bytes"`).
Something that must run for the life of the process (the realtime engine) is a context manager
in `LIFESPANS` (api/lifespans.py); if it can fail, it registers a readiness check in
`app.state.readiness`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler

from vechat_rls import __version__, db
from vechat_rls.api.apidocs import SwaggerController
from vechat_rls.api.attachments import AttachmentsController
from vechat_rls.api.body import StrictBody
from vechat_rls.api.contacts import ContactsController
from vechat_rls.api.conversations import ConversationsController
from vechat_rls.api.dependencies import (
    provide_conn,
    provide_database,
    provide_fleet_database,
    provide_identity,
)
from vechat_rls.api.health import HealthController, MetricsController
from vechat_rls.api.lifespans import collector_lifespan, database_lifespan, realtime_lifespan
from vechat_rls.api.me import MeController
from vechat_rls.api.messages import MessagesController
from vechat_rls.api.presence import PresenceController
from vechat_rls.api.problems import EXCEPTION_HANDLERS, problem_responses
from vechat_rls.api.security import PlacedVerifier, require_identity
from vechat_rls.api.settings import SettingsController
from vechat_rls.api.stats import StatsController
from vechat_rls.api.web import WebController
from vechat_rls.api.ws import realtime_socket
from vechat_rls.auth import TokenVerifier
from vechat_rls.config import Settings
from vechat_rls.fleet import Fleet
from vechat_rls.registry import load as load_registry

API_PREFIX = "/api/v1"

CONTROLLERS: list[ControllerRouterHandler] = [
    MeController,
    ConversationsController,
    MessagesController,
    ContactsController,
    SettingsController,
    PresenceController,
    StatsController,
    AttachmentsController,
    realtime_socket,  # WebSocket /api/v1/ws (api/ws.py)
]
"""Resource controllers mounted under `/api/v1`, one line each."""

Lifespan = Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]


LIFESPANS: list[Lifespan] = [
    database_lifespan,
    realtime_lifespan,  # listener + hub: started after the pool it reads through, stopped before it
    collector_lifespan,  # last: freezes what the others made (api/lifespans.py)
]
"""Entered in order at startup, left in reverse at shutdown."""

BEARER_SCHEME = "BearerToken"


def create_app(
    settings: Settings,
    *,
    controllers: Sequence[ControllerRouterHandler] | None = None,
    debug: bool = False,
    allow_privileged_role: bool = False,
) -> Litestar:
    """The ASGI app for `settings`; `controllers` replaces `CONTROLLERS` (tests).

    With `settings.registry` it serves every database of the registry (fleet.py), routing each
    request by its organisation; otherwise the one `settings.database_url`. A registry that
    cannot be used raises `RegistryError`. `allow_privileged_role` (registry mode, benchmarks
    only) downgrades the role check of each pool's first connection to a warning.
    """
    verifier = TokenVerifier(settings)  # a bad key fails here, before serving anything
    fleet: Fleet | None = None
    if settings.registry:
        registry = load_registry(settings.registry)
        fleet = Fleet(registry, settings, allow_privileged_role=allow_privileged_role)
    api = Router(
        path=API_PREFIX,
        route_handlers=[
            _with_body_limit(c, settings)
            for c in (CONTROLLERS if controllers is None else controllers)
        ],
        guards=[require_identity],
        dependencies={
            "identity": Provide(provide_identity),
            "database": Provide(provide_fleet_database if fleet else provide_database),
            "conn": Provide(provide_conn),
        },
        security=[{BEARER_SCHEME: []}],
        dto=StrictBody,  # request bodies: strict msgspec decoding (api/body.py)
        return_dto=None,  # responses: msgspec encodes structs directly
    )
    _document_problems(api)
    prometheus = PrometheusConfig(
        app_name="vechat_rls",
        prefix="vechat",
        group_path=True,
        exclude=["/metrics"],
    )
    return Litestar(
        route_handlers=[api, HealthController, MetricsController, WebController,
                        SwaggerController],
        lifespan=list(LIFESPANS),
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        middleware=[prometheus.middleware],
        cors_config=(
            CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
        ),
        dependencies={"settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False)},
        openapi_config=_openapi(),
        state=_state(settings, verifier, fleet),
        debug=debug,
        # The process that serves the app configures logging (`vechat-rls serve`: uvicorn's
        # configuration, api/serving.py `log_config`), not the app: Litestar's default set the
        # root logger to INFO with a handler holding the stderr of the moment the app was made,
        # so every library's INFO lines were printed, unredacted, and, where that stderr was
        # later replaced and closed (the test runner's capture), each was a "Logging error".
        # Unexpected exceptions are logged by api/problems.py either way.
        logging_config=None,
    )


API_PROBLEMS = (400, 401, 503)
"""Problem statuses every `/api/v1` operation may answer, added to its OpenAPI responses; an
operation with a request body may answer 413 too. What else each may answer (403, 404, 409,
422, 429, …) its handler declares (`responses=problem_responses(…)`)."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _document_problems(router: Router) -> None:
    for route in router.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler):
                body = 413 if handler.http_methods & BODY_METHODS else None
                statuses = (*API_PROBLEMS, body) if body else API_PROBLEMS
                handler.responses = {
                    **problem_responses(*statuses),
                    **(handler.responses or {}),
                }


def _with_body_limit(
    controller: ControllerRouterHandler, settings: Settings
) -> ControllerRouterHandler:
    """A controller with `body_limit_setting = "max_upload_bytes"` gets that setting's limit."""
    setting = getattr(controller, "body_limit_setting", None)
    if setting is None or not isinstance(controller, type):
        return controller
    limit = getattr(settings, setting)
    if not isinstance(limit, int):
        raise TypeError(f"{controller.__name__}.body_limit_setting: {setting!r} is not a size")
    return type(controller.__name__, (controller,), {"request_max_body_size": limit})


def _state(settings: Settings, verifier: TokenVerifier, fleet: Fleet | None) -> Any:
    from litestar.datastructures import State

    return State(
        {
            "settings": settings,
            "verifier": verifier if fleet is None else PlacedVerifier(verifier, fleet),
            "database": db.Database(settings) if fleet is None else None,
            "fleet": fleet,  # registry mode
            "readiness": {},
        }
    )


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="vechat-rls",
        version=__version__,
        description=(
            "Multi-tenant 1:1 chat. Every `/api/v1` route needs `Authorization: Bearer <jwt>`; "
            "errors are RFC 9457 problem details (`application/problem+json`), one `type` per "
            "status. Before any route, on any path, the server itself may answer 431 (headers "
            "too large), 408 (headers or body too slow) or 503 (too many connections) and close "
            "the connection."
        ),
        path="/schema",
        # The interactive page is api/apidocs.py's (Swagger UI served by us, not from a CDN).
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"]), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                BEARER_SCHEME: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
    )
