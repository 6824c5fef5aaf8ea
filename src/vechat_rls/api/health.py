"""Operational endpoints: liveness (`/healthz`), readiness (`/readyz`), metrics (`/metrics`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from vechat_rls.api.problems import problem, problem_responses

ReadinessCheck = Callable[[], Awaitable[dict[str, str] | None]]
"""Registered in `app.state.readiness` by lifespans. Returns None when its dependency is usable,
or the states of its parts (registry mode: `database:<name>` → `ok`, `idle`, `unavailable`) when
the process is usable as a whole; raises when it is not (an exception with a `checks` dict still
reports the parts)."""

USABLE = frozenset({"ok", "idle"})

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
        responses=problem_responses(503),
        description=(
            "200 when every dependency answers, 503 with `Retry-After` otherwise. In registry "
            "mode `checks` has one `database:<name>` (and `realtime:<name>`) per database; one "
            "that is unavailable makes the status `degraded`, and only when no database is "
            "reachable is the answer 503."
        ),
    )
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[Any]:
        checks: dict[str, ReadinessCheck] = request.app.state.readiness
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), CHECK_TIMEOUT_S) for check in checks.values()),
            return_exceptions=True,
        )
        report: dict[str, str] = {}
        failed: list[str] = []
        for name, result in zip(checks, results, strict=True):
            if result is None:
                report[name] = "ok"
            elif isinstance(result, dict):
                report.update(result)
            else:
                parts = getattr(result, "checks", None)
                report.update(parts if isinstance(parts, dict) else {name: "unavailable"})
                failed.append(name)
        failed.sort()
        if failed:
            return problem(
                503,
                f"not ready: {', '.join(failed)} unavailable",
                headers={"Retry-After": "2"},
                extra={"checks": report},
            )
        usable = all(state in USABLE for state in report.values())
        return Response(Health(status="ok" if usable else "degraded", checks=report))


class MetricsController(PrometheusController):
    """`/metrics`: Litestar's Prometheus endpoint, documented as what it answers (text, not
    JSON). With several workers it adds up every worker's samples (api/serving.py)."""

    tags = ["operations"]

    @get(
        media_type="text/plain",
        summary="Prometheus metrics, in the text exposition format",
        sync_to_thread=False,
    )
    def get(self) -> Response[bytes]:
        registry = REGISTRY
        if "prometheus_multiproc_dir" in os.environ or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
