"""The one place that turns an exception into an answer: a problem, or a WebSocket error frame.

The domain raises `vechat_rls.chat.errors` (so do the edges, for the same refusals); database
and token errors propagate as they are. `failure()` says how the service answers each — status,
detail, headers — and both the HTTP exception handlers (RFC 9457 problem details,
`application/problem+json`) and the WebSocket endpoint (an `error` frame with that status and
detail) answer from it. An answer never carries a stack trace, SQL, or a constraint's text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from vechat_rls import db
from vechat_rls.auth import AuthError
from vechat_rls.chat.errors import (
    ChatError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    RuleBroken,
    TooLarge,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:vechat:problem:"

# One problem type per kind of failure (contract.md, "Errors"), whichever layer refused: the
# status names the kind. Malformed JSON, a wrong type, an unknown field and a value out of range
# are all `validation-error`, whether msgspec, Litestar, the domain or a CHECK found them.
PROBLEM_SLUGS: dict[int, str] = {
    400: "validation-error",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    416: "range-not-satisfiable",
    422: "unprocessable",
    429: "rate-limited",
    431: "header-fields-too-large",
    500: "internal-error",
    503: "service-unavailable",
}


def problem_type(status: int) -> str:
    """The problem `type` of every answer with `status`: `urn:vechat:problem:<slug>`."""
    slug = PROBLEM_SLUGS.get(status)
    if slug is None:
        slug = HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    return TYPE_PREFIX + slug


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # dotted, e.g. `peer.user_id`; empty for the body as a whole
    source: str  # body, query, path, header
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details, as every error response carries them (for the OpenAPI document)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI `responses` entries for problem-details answers with these statuses."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in statuses
    }


# ---------------------------------------------------------------------------------------------


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    """A problem-details response; its `type` is the status's (`problem_type`)."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": problem_type(status),
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
    }
    body.update(extra or {})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    """Litestar's `[{message, key, source}]` as `[{path, source, message}]` with full paths."""
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = str(item.get("key") or "")
        source = str(getattr(item.get("source"), "value", item.get("source")) or "body")
        path = "" if key == "data" and source == "body" else key
        if match := _UNKNOWN_FIELD.search(message):
            path = f"{path}.{match.group(1)}" if path else match.group(1)
        errors.append({"path": path, "source": source, "message": message})
    return errors


# What Litestar raises (as a 500) when the client hangs up before its request body has arrived
# (litestar.connection.Request.stream): the client's doing, and nobody is left to answer.
CLIENT_GONE = "client disconnected prematurely"


def _http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status == 500 and exc.detail == CLIENT_GONE:
        log.info(
            "client went away before sending its whole request: %s %s",
            request.method,
            request.url.path,
        )
        return problem(400, "the client disconnected before sending its whole request")
    if isinstance(exc, ValidationException):
        return problem(
            400, "request validation failed", extra={"errors": _validation_errors(exc.extra)}
        )
    if status >= 500:
        log.error("internal HTTP exception %s", status, exc_info=exc)
        return problem(status, headers=exc.headers)
    detail = exc.detail if exc.detail and status != 413 else None
    if status == 413:
        detail = "request body too large"
    return problem(status, detail, headers=exc.headers)


@dataclass(frozen=True, slots=True)
class Failure:
    """How the service answers an exception: the problem's parts, or an error frame's."""

    status: int
    detail: str
    headers: dict[str, str] | None = None
    extra: dict[str, Any] | None = None

    def response(self) -> Response[dict[str, Any]]:
        return problem(self.status, self.detail, headers=self.headers, extra=self.extra)


_CHAT_ERRORS: dict[type[ChatError], int] = {
    Invalid: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    RuleBroken: 422,
    RateLimited: 429,
}

# SQLSTATE → (status, detail). Details are fixed text: the server's message could name
# another tenant's key values (`Key (organisation_id, id)=(2, 7) already exists`).
_SQLSTATE_CLASSES: dict[str, tuple[int, str]] = {
    "08": (503, "database unavailable, retry later"),
    "53": (503, "database overloaded, retry later"),
    "40": (503, "concurrent update, retry"),
    "22": (400, "a value is invalid or out of range"),
}
_SQLSTATES: dict[str, tuple[int, str]] = {
    "23503": (404, "a referenced resource was not found"),
    "23505": (409, "the resource already exists"),
    "23502": (400, "a required value is missing"),
    "23514": (400, "a value is invalid or out of range"),
    "57014": (503, "the request took too long, retry later"),
    "57P01": (503, "database restarting, retry later"),
    "57P02": (503, "database restarting, retry later"),
    "57P03": (503, "database starting, retry later"),
}


def failure(exc: BaseException) -> Failure:
    """The answer to `exc`, whichever edge it reached (logging what must be logged)."""
    if isinstance(exc, ChatError):
        return _chat_failure(exc)
    if isinstance(exc, AuthError):
        return Failure(401, exc.reason, {"WWW-Authenticate": exc.www_authenticate})
    if isinstance(exc, (db.DatabaseUnavailable, *db.UNREACHABLE_ERRORS)):
        return _database_unavailable(exc)
    if isinstance(exc, db.PostgresError):
        return _postgres_error(exc)
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        # Litestar groups exceptions raised while cleaning up generator dependencies.
        return failure(exc.exceptions[0])
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return Failure(500, HTTPStatus(500).phrase)


def _chat_failure(exc: ChatError) -> Failure:
    status = next((_CHAT_ERRORS[cls] for cls in type(exc).__mro__ if cls in _CHAT_ERRORS), 500)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    extra = None
    if isinstance(exc, Invalid) and exc.field is not None:
        error = {"path": exc.field, "source": "body", "message": exc.reason or exc.detail}
        extra = {"errors": [error]}
    return Failure(status, exc.detail, headers, extra)


def _database_unavailable(exc: BaseException) -> Failure:
    log.warning("database unavailable: %s", type(exc).__name__)
    retry_after = exc.retry_after if isinstance(exc, db.DatabaseUnavailable) else db.RETRY_AFTER_S
    return Failure(503, "database unavailable, retry later", {"Retry-After": str(retry_after)})


def _postgres_error(exc: db.PostgresError) -> Failure:
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate == "42501":
        if "row-level security" in str(exc):
            # A write the policies refuse is a write to something the caller cannot see.
            return Failure(404, "resource not found")
        log.error("privilege error (a missing GRANT?): sqlstate=%s", sqlstate, exc_info=exc)
        return Failure(403, "not allowed")
    mapped = _SQLSTATES.get(sqlstate, _SQLSTATE_CLASSES.get(sqlstate[:2]))
    if mapped is None:
        log.error("unmapped database error sqlstate=%s", sqlstate, exc_info=exc)
        return Failure(500, HTTPStatus(500).phrase)
    status, detail = mapped
    headers = {"Retry-After": "1"} if status == 503 else None
    if status >= 500:
        log.warning("database error sqlstate=%s → %s", sqlstate, status)
    return Failure(status, detail, headers)


def _answer(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        if isinstance(inner, HTTPException):
            return _http_exception(_, inner)
    return failure(exc).response()


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_exception,
    Exception: _answer,
}
"""Passed to `Litestar(exception_handlers=…)`; the handler of the closest class in the MRO wins."""
