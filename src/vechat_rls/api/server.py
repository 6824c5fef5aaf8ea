"""`vechat-rls serve`: check settings and the database roles, then run the app under uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import uvicorn
import uvicorn.config
from litestar import Litestar

from vechat_rls import db, registry
from vechat_rls.api.app import create_app
from vechat_rls.auth import TokenVerifier
from vechat_rls.config import ConfigError, Settings

APP_FACTORY = "vechat_rls.api.server:app_factory"
METRICS_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_TOKEN_IN_TEXT = re.compile(r"(access_token=)[^&\s\"']+")


class TokenRedactingFilter(logging.Filter):
    """Blanks `access_token=` values (WebSocket URLs) in log records: tokens are never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message:
            record.msg = _TOKEN_IN_TEXT.sub(r"\1***", message)
            record.args = ()
        return True


# Set by `serve --allow-privileged-role` for its worker processes (registry mode checks each
# database again when its pool opens, in the workers).
ALLOW_PRIVILEGED_ENV = "VECHAT_SERVE_ALLOW_PRIVILEGED_ROLE"
STARTUP_CHECKS_AT_ONCE = 8  # registry databases checked concurrently before serving


def app_factory() -> Litestar:
    """What each uvicorn worker process imports: the app for the environment's settings."""
    return create_app(
        Settings.from_env(), allow_privileged_role=os.environ.get(ALLOW_PRIVILEGED_ENV) == "1"
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with the token filter on its access and error loggers."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": f"{__name__}.TokenRedactingFilter"}}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config


def check_before_serving(settings: Settings, *, allow_privileged_role: bool) -> None:
    """Everything that must hold before accepting a request; raises `CliError` otherwise."""
    from vechat_rls.cli import CliError

    try:
        TokenVerifier(settings)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if settings.registry:
        _check_registry(settings.registry, allow_privileged_role=allow_privileged_role)
        return
    try:
        problems = asyncio.run(
            db.check_role_safety(settings.database_url, allow_privileged=allow_privileged_role)
        )
    except db.RoleSafetyError as exc:
        raise CliError(f"refusing to serve: {exc}", 1) from None
    except db.DatabaseUnavailable as exc:
        raise CliError(str(exc), 1) from None
    _warn_privileged(problems)


def _warn_privileged(problems: list[str], where: str = "") -> None:
    for problem in problems:
        print(
            f"vechat-rls: WARNING: {where}{problem}. Tenant isolation is NOT enforced "
            "(--allow-privileged-role: benchmarks only).",
            file=sys.stderr,
        )


def _check_registry(path: str, *, allow_privileged_role: bool) -> None:
    """The role check of every registry database (docs/serving.md, "Before serving").

    A registry that cannot be used is exit 2; a role that could bypass row-level security, or a
    URL the database refuses (no such role or database, wrong password), is exit 1. A database
    that does not answer is a warning: the others are served, and it is checked when its pool
    first opens. None answering is exit 1.
    """
    from vechat_rls.cli import CliError

    try:
        databases = registry.load(path)
        databases.require_serving()
    except registry.RegistryError as exc:
        raise CliError(str(exc)) from None

    async def check_all() -> list[list[str] | BaseException]:
        limit = asyncio.Semaphore(STARTUP_CHECKS_AT_ONCE)

        async def one(url: str) -> list[str]:
            async with limit:
                return await db.check_role_safety(url, allow_privileged=allow_privileged_role)

        return await asyncio.gather(
            *(one(entry.require_url()) for entry in databases.entries), return_exceptions=True
        )

    results = asyncio.run(check_all())
    away: list[str] = []
    for entry, result in zip(databases.entries, results, strict=True):
        if isinstance(result, db.RoleSafetyError):
            raise CliError(f"refusing to serve database {entry.name}: {result}", 1)
        if isinstance(result, db.DatabaseUnavailable) and db.is_outage(result):
            away.append(entry.name)
            print(
                f"vechat-rls: WARNING: database {entry.name} is unreachable ({result}); serving "
                "the others, its organisations get 503 until it answers",
                file=sys.stderr,
            )
        elif isinstance(result, BaseException):
            raise CliError(f"database {entry.name}: {result}", 1)
        else:
            _warn_privileged(result, f"database {entry.name}: ")
    if len(away) == len(databases.entries):
        raise CliError("no database of the registry is reachable", 1)


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[str | None]:
    """With several workers, `/metrics` counts for all of them, whichever one answers.

    prometheus_client's multiprocess mode: each worker writes its samples to files in
    `PROMETHEUS_MULTIPROC_DIR` and the `/metrics` handler (Litestar's) adds them up. The workers
    are fresh interpreters that read the variable when they import prometheus_client, so it is
    set here, before uvicorn starts them, to a new directory for this run (files left by an
    earlier run would be added in) that goes when serve ends. A directory the environment
    already names is used as it is: whoever set it manages it. Yields the directory in use.
    """
    given = next((os.environ[name] for name in METRICS_DIR_VARIABLES if name in os.environ), None)
    if workers < 2 or given is not None:
        yield given
        return
    directory = tempfile.mkdtemp(prefix="vechat-metrics-")
    os.environ[METRICS_DIR_VARIABLES[0]] = directory
    try:
        yield directory
    finally:
        os.environ.pop(METRICS_DIR_VARIABLES[0], None)
        shutil.rmtree(directory, ignore_errors=True)


def run_cli(args: argparse.Namespace) -> int:
    from vechat_rls.cli import CliError

    try:
        settings = Settings.from_env(host=args.host, port=args.port)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    check_before_serving(settings, allow_privileged_role=args.allow_privileged_role)
    if args.allow_privileged_role:
        os.environ[ALLOW_PRIVILEGED_ENV] = "1"
    with shared_metrics(args.workers):
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_config=log_config(),
            server_header=False,
            lifespan="on",
            # A WebSocket frame is a request body too: the same limit (uvicorn closes 1009
            # above it).
            ws_max_size=settings.max_body_bytes,
        )
    return 0
