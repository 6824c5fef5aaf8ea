"""`vechat-rls serve`: the settings and checks as one-line messages and exit codes, then serve."""

from __future__ import annotations

import argparse
import sys

from vechat_rls.api import serving
from vechat_rls.cli import EXIT_FINDING, SERVE_LIMIT_FLAGS, CliError
from vechat_rls.config import ConfigError, Settings
from vechat_rls.registry import RegistryError


def warn(line: str) -> None:
    print(f"vechat-rls: WARNING: {line}", file=sys.stderr)


def check_before_serving(settings: Settings, *, allow_privileged_role: bool) -> None:
    """`serving.preflight`, its warnings printed; unusable settings or registry are exit 2, a
    database that must not be served exit 1."""
    try:
        serving.preflight(settings, allow_privileged_role=allow_privileged_role, warn=warn)
    except (ConfigError, RegistryError) as exc:
        raise CliError(str(exc)) from None
    except serving.Refused as exc:
        raise CliError(str(exc), EXIT_FINDING) from None


def serve(
    *,
    host: str | None,
    port: int | None,
    workers: int | None,
    allow_privileged_role: bool,
    access_log: bool = False,
    limits: dict[str, int | None] | None = None,
) -> int:
    """Serve with the environment's settings, `host`, `port` and the `limits` given (Settings
    fields; None: not given) overriding theirs; `workers` None: `serving.default_workers()`."""
    try:
        settings = Settings.from_env(None, host=host, port=port, **(limits or {}))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if workers is None:
        workers = serving.default_workers()
    if workers < 1:
        raise CliError("--workers must be at least 1")
    check_before_serving(settings, allow_privileged_role=allow_privileged_role)
    serving.run(
        settings,
        workers=workers,
        allow_privileged_role=allow_privileged_role,
        access_log=access_log,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """`vechat-rls serve [--host H] [--port P] [--workers N] [--[no-]access-log]
    [--allow-privileged-role] [--max-header-bytes B] [--header-timeout S] [--body-timeout S]
    [--keepalive-timeout S] [--max-connections N]`."""
    return serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        allow_privileged_role=args.allow_privileged_role,
        access_log=args.access_log,
        limits={setting: getattr(args, setting) for _, setting, _, _ in SERVE_LIMIT_FLAGS},
    )
