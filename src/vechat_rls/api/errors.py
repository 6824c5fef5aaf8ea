"""The one mapping from exceptions to RFC 9457 problem details (`application/problem+json`).

Controllers raise the `ApiError` subclasses below (or let database errors propagate); nothing else
builds an error response. A response never carries a stack trace, SQL, or a constraint's text.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from vechat_rls import db
from vechat_rls.auth import AuthError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:vechat:problem:"


class ApiError(Exception):
    """An answer other than success; `detail` is shown to the client, so it names ids, not data."""

    status: int = 500
    slug: str = "internal-error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or HTTPStatus(self.status).phrase)
        self.detail = detail or HTTPStatus(self.status).phrase
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(ApiError):
    """400: the request is malformed or a value is out of range."""

    status, slug = 400, "bad-request"


class Forbidden(ApiError):
    """403: authenticated, visible, but not allowed (e.g. editing someone else's message)."""

    status, slug = 403, "forbidden"


class NotFound(ApiError):
    """404 for ids that do not exist *and* for ids the caller may not see — indistinguishable."""

    status, slug = 404, "not-found"

    def __init__(self, resource: str, resource_id: int | str | None = None) -> None:
        what = resource if resource_id is None else f"{resource} {resource_id}"
        super().__init__(f"{what} not found")


class Conflict(ApiError):
    """409: a duplicate that cannot be merged."""

    status, slug = 409, "conflict"


class PayloadTooLarge(ApiError):
    """413: a body or an uploaded file over its limit."""

    status, slug = 413, "payload-too-large"


class Unprocessable(ApiError):
    """422: a well-formed request that breaks a rule (e.g. the edit window has passed)."""

    status, slug = 422, "unprocessable"


class RateLimited(ApiError):
    """429 with `Retry-After` (seconds until the window resets)."""

    status, slug = 429, "rate-limited"

    def __init__(self, retry_after: int, detail: str = "rate limit exceeded") -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(ApiError):
    """503 with `Retry-After`: the database (or another dependency) is not there right now."""

    status, slug = 503, "service-unavailable"

    def __init__(self, detail: str = "service temporarily unavailable", retry_after: int = 2):
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


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
    slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    """A problem-details response; `type` is `urn:vechat:problem:<slug>`."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (slug or phrase.lower().replace(" ", "-").replace("'", "")),
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
    }
    body.update(extra or {})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return problem(exc.status, exc.detail, slug=exc.slug, headers=exc.headers, extra=exc.extra)


def _auth_error(_: Request[Any, Any, Any], exc: AuthError) -> Response[dict[str, Any]]:
    return problem(
        401, exc.reason, slug="unauthorized", headers={"WWW-Authenticate": exc.www_authenticate}
    )


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


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return problem(
            400,
            "request validation failed",
            slug="validation-error",
            extra={"errors": _validation_errors(exc.extra)},
        )
    if status >= 500:
        log.error("internal HTTP exception %s", status, exc_info=exc)
        return problem(status, headers=exc.headers)
    detail = exc.detail if exc.detail and status != 413 else None
    if status == 413:
        detail = "request body too large"
    return problem(status, detail, headers=exc.headers)


def _database_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database unavailable: %s", type(exc).__name__)
    retry_after = exc.retry_after if isinstance(exc, db.DatabaseUnavailable) else db.RETRY_AFTER_S
    return problem(
        503,
        "database unavailable, retry later",
        slug="service-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


# SQLSTATE → (status, slug, detail). Details are fixed text: the server's message could name
# another tenant's key values (`Key (organisation_id, id)=(2, 7) already exists`).
_SQLSTATE_CLASSES: dict[str, tuple[int, str, str]] = {
    "08": (503, "service-unavailable", "database unavailable, retry later"),
    "53": (503, "service-unavailable", "database overloaded, retry later"),
    "40": (503, "service-unavailable", "concurrent update, retry"),
    "22": (400, "bad-request", "a value is invalid or out of range"),
}
_SQLSTATES: dict[str, tuple[int, str, str]] = {
    "23503": (404, "not-found", "a referenced resource was not found"),
    "23505": (409, "conflict", "the resource already exists"),
    "23502": (400, "bad-request", "a required value is missing"),
    "23514": (400, "bad-request", "a value is invalid or out of range"),
    "57014": (503, "service-unavailable", "the request took too long, retry later"),
    "57P01": (503, "service-unavailable", "database restarting, retry later"),
    "57P02": (503, "service-unavailable", "database restarting, retry later"),
    "57P03": (503, "service-unavailable", "database starting, retry later"),
}


def _postgres_error(_: Request[Any, Any, Any], exc: db.PostgresError) -> Response[dict[str, Any]]:
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate == "42501":
        if "row-level security" in str(exc):
            # A write the policies refuse is a write to something the caller cannot see.
            return problem(404, "resource not found", slug="not-found")
        log.error("privilege error (a missing GRANT?): sqlstate=%s", sqlstate, exc_info=exc)
        return problem(403, "not allowed", slug="forbidden")
    mapped = _SQLSTATES.get(sqlstate, _SQLSTATE_CLASSES.get(sqlstate[:2]))
    if mapped is None:
        log.error("unmapped database error sqlstate=%s", sqlstate, exc_info=exc)
        return problem(500, slug="internal-error")
    status, slug, detail = mapped
    headers = {"Retry-After": "1"} if status == 503 else None
    if status >= 500:
        log.warning("database error sqlstate=%s → %s", sqlstate, status)
    return problem(status, detail, slug=slug, headers=headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        # Litestar groups exceptions raised while cleaning up generator dependencies.
        inner = exc.exceptions[0]
        for cls in type(inner).__mro__:
            handler = EXCEPTION_HANDLERS.get(cls)
            if handler is not None and cls is not Exception:
                return handler(request, inner)
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return problem(500, slug="internal-error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    AuthError: _auth_error,
    HTTPException: _http_exception,
    db.DatabaseUnavailable: _database_unavailable,
    **{cls: _database_unavailable for cls in db.UNREACHABLE_ERRORS},
    db.PostgresError: _postgres_error,
    Exception: _internal_error,
}
"""Passed to `Litestar(exception_handlers=…)`; the handler of the closest class in the MRO wins."""
