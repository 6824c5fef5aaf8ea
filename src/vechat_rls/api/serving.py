"""Serving the app: the checks before the first request, then uvicorn with our logging and metrics.

The command line (cli/serve.py) reads the options, prints what `preflight` warns about and turns
its errors into exit codes; nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
import uvicorn.config
from litestar import Litestar

from vechat_rls import db, registry
from vechat_rls.api.app import create_app
from vechat_rls.api.protocol import LimitedHttpToolsProtocol, Limits
from vechat_rls.auth import TokenVerifier
from vechat_rls.config import ConfigError, Settings

APP_FACTORY = "vechat_rls.api.serving:app_factory"
METRICS_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_TOKEN_IN_TEXT = re.compile(r"(access_token=)[^&\s\"']+")


def _redacted(value: object) -> object:
    if isinstance(value, str) and "access_token=" in value:
        return _TOKEN_IN_TEXT.sub(r"\1***", value)
    return value


class TokenRedactingFilter(logging.Filter):
    """Blanks `access_token=` values (WebSocket URLs) in log records: tokens are never logged.

    The format and each of its arguments are redacted in place, keeping the record's shape:
    uvicorn's access formatter unpacks `args` as (client, method, path, version, status), so a
    record whose arguments were merged into its message could no longer be formatted at all.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


# `serve` without --workers: one worker per CPU this process may use, at most this many (each
# worker holds up to VECHAT_POOL_MAX + 2 connections; 8 x 12 = 96 fits PostgreSQL's default
# max_connections of 100 only just, so more workers than that are a decision, not a default).
MAX_DEFAULT_WORKERS = 8
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> (
    float | None
):
    """The CPUs this process's cgroup (or any ancestor) may use, from its CFS quota; None for no
    quota (or no cgroup file system to read).

    cgroup v2: `cpu.max` ("max 100000" or "150000 100000"); v1: `cpu.cfs_quota_us` (-1 = none)
    over `cpu.cfs_period_us`, under the `cpu` controller's hierarchy.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    files: tuple[str, ...]
    for line in lines:
        _hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "":  # v2 unified hierarchy
            directory, files = root / path.lstrip("/"), ("cpu.max",)
            if not (root / "cgroup.controllers").exists():
                directory = root / "unified" / path.lstrip("/")
        elif "cpu" in controllers.split(","):
            directory, files = root / controllers / path.lstrip("/"), (
                "cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        # A limit anywhere up the tree applies; inside a container the tree starts at its root.
        for level in (directory, *directory.parents):
            if level == root.parent:
                break
            quota = _read_quota(level, files)
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _read_quota(directory: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            limit, _, period = (directory / files[0]).read_text().strip().partition(" ")
            if limit == "max":
                return None
            return int(limit) / int(period)
        quota = int((directory / files[0]).read_text())
        if quota <= 0:
            return None
        return quota / int((directory / files[1]).read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cpus() -> float:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota if any."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cpus = float(os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def default_workers(cpus: float | None = None) -> int:
    """`serve`'s worker count without --workers: ceil(usable CPUs), at least 1, at most
    `MAX_DEFAULT_WORKERS` (docs/serving.md, "Workers")."""
    if cpus is None:
        cpus = usable_cpus()
    return max(1, min(MAX_DEFAULT_WORKERS, math.ceil(cpus - 1e-9)))


# Set by `serve --allow-privileged-role` for its worker processes (registry mode checks each
# database again when its pool opens, in the workers).
ALLOW_PRIVILEGED_ENV = "VECHAT_SERVE_ALLOW_PRIVILEGED_ROLE"
STARTUP_CHECKS_AT_ONCE = 8  # registry databases checked concurrently before serving


def app_factory() -> Litestar:
    """What each uvicorn worker process imports: the app for the environment's settings."""
    return create_app(
        Settings.from_env(), allow_privileged_role=os.environ.get(ALLOW_PRIVILEGED_ENV) == "1"
    )


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""vechat-rls's own lines: time (bench/realtime.py reads the pacer's switches by it), level, the
module that logged."""


def log_config() -> dict[str, Any]:
    """The served process's logging: uvicorn's, plus vechat-rls's own loggers (`vechat_rls.*`,
    INFO and above, to stderr), with the token filter on every handler. The root logger is left
    as Python has it (WARNING, no handler of ours): other libraries' INFO lines stay silent."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": f"{__name__}.TokenRedactingFilter"}}
    config["formatters"]["vechat"] = {"format": LOG_FORMAT}
    config["handlers"]["vechat"] = {
        "class": "logging.StreamHandler",
        "formatter": "vechat",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["vechat_rls"] = {"handlers": ["vechat"], "level": "INFO", "propagate": False}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config


class Refused(Exception):
    """A database must not be served: its role could bypass row-level security, it refuses our
    login, or no database of the registry answers. The message is one line."""


def preflight(
    settings: Settings, *, allow_privileged_role: bool, warn: Callable[[str], None]
) -> None:
    """Everything that must hold before accepting a request; `warn` hears each warning (a line).

    Raises `ConfigError` for an unusable key, `registry.RegistryError` for an unusable
    registry, `Refused` for a database that must not be served (docs/serving.md, "Before
    serving").
    """
    TokenVerifier(settings)
    if settings.context_key:
        db.context.use_keys(settings.context_key)
    try:
        db.context.loaded_keys()  # the database acts for no context the service cannot sign
    except db.context.ContextKeyError as exc:
        raise ConfigError(str(exc)) from None
    if settings.registry:
        _check_registry(settings.registry, allow_privileged_role=allow_privileged_role, warn=warn)
        return
    try:
        problems = asyncio.run(
            db.check_role_safety(settings.database_url, allow_privileged=allow_privileged_role)
        )
    except db.RoleSafetyError as exc:
        raise Refused(f"refusing to serve: {exc}") from None
    except db.DatabaseUnavailable as exc:
        raise Refused(str(exc)) from None
    _warn_privileged(problems, warn)


def _warn_privileged(problems: list[str], warn: Callable[[str], None], where: str = "") -> None:
    for problem in problems:
        warn(
            f"{where}{problem}. Tenant isolation is NOT enforced "
            "(--allow-privileged-role: benchmarks only)."
        )


def _check_registry(path: str, *, allow_privileged_role: bool, warn: Callable[[str], None]) -> None:
    """The role check of every registry database.

    A role that could bypass row-level security, or a URL the database refuses (no such role or
    database, wrong password), is `Refused`. A database that does not answer is a warning: the
    others are served, and it is checked when its pool first opens. None answering is `Refused`.
    """
    databases = registry.load(path)
    databases.require_serving()

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
            raise Refused(f"refusing to serve database {entry.name}: {result}")
        if isinstance(result, db.DatabaseUnavailable) and db.is_outage(result):
            away.append(entry.name)
            warn(
                f"database {entry.name} is unreachable ({result}); serving the others, its "
                "organisations get 503 until it answers"
            )
        elif isinstance(result, BaseException):
            raise Refused(f"database {entry.name}: {result}")
        else:
            _warn_privileged(result, warn, f"database {entry.name}: ")
    if len(away) == len(databases.entries):
        raise Refused("no database of the registry is reachable")


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


def run(
    settings: Settings, *, workers: int, allow_privileged_role: bool, access_log: bool = False
) -> None:
    """Serve `settings` with `workers` processes until the server stops (after `preflight`).

    `access_log`: uvicorn's line per request (off by default: docs/serving.md, "Workers").
    """
    if allow_privileged_role:
        os.environ[ALLOW_PRIVILEGED_ENV] = "1"
    with shared_metrics(workers):
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_config=log_config(),
            access_log=access_log,
            server_header=False,
            lifespan="on",
            http=http_protocol(settings),
            timeout_keep_alive=settings.keepalive_timeout_s,
            # A WebSocket frame is a request body too: the same limit (uvicorn closes 1009
            # above it).
            ws_max_size=settings.max_body_bytes,
        )


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits of `settings` (api/protocol.py).

    A partial, not a subclass made here: with several workers uvicorn pickles its config into
    each worker process, and only a class importable by name pickles.
    """
    factory = functools.partial(LimitedHttpToolsProtocol, limits=Limits.of(settings))
    return factory  # type: ignore[return-value]  # uvicorn calls it like the class
