"""Operational endpoints: liveness (`/healthz`) and readiness (`/readyz`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get

from vechat_rls.api.errors import problem

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when its dependency is not usable; registered in `app.state.readiness` by lifespans."""

CHECK_TIMEOUT_S = 3.0


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


class HealthController(Controller):
    path = "/"
    tags = ["operations"]

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="The database (and, once running, the realtime listener) are reachable",
        description="200 when every dependency answers, 503 with `Retry-After` otherwise.",
    )
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[Any]:
        checks: dict[str, ReadinessCheck] = request.app.state.readiness
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), CHECK_TIMEOUT_S) for check in checks.values()),
            return_exceptions=True,
        )
        report = {
            name: "ok" if result is None else "unavailable"
            for name, result in zip(checks, results, strict=True)
        }
        failed = sorted(name for name, state in report.items() if state != "ok")
        if failed:
            return problem(
                503,
                f"not ready: {', '.join(failed)} unavailable",
                slug="service-unavailable",
                headers={"Retry-After": "2"},
                extra={"checks": report},
            )
        return Response(Health(status="ok", checks=report))
