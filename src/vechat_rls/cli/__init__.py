"""The `vechat-rls` command line: serve, demo, db, audit, token.

This package owns the command line: argument parsing, one-line messages and exit codes, one
module per command (`cli.serve`, `cli.demo`, `cli.db`, `cli.audit`, `cli.token`). Each command's
work lives in a library module that raises its own errors, which the command turns into lines
and codes. Nothing outside this package imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vechat_rls.config import PREFIX, Settings
from vechat_rls.pgserver import PgServerError

# Exit codes of `db …` and `audit` (contract); with several databases, the highest of them.
EXIT_OK = 0
EXIT_FINDING = 1  # a check failed: an isolation finding, a changed or pending migration
EXIT_USAGE = 2  # bad usage or input
EXIT_FAILED = 3  # a database could not be reached, or a step failed (and was rolled back)


class CliError(Exception):
    """A one-line, user-facing failure; `main` prints it and exits non-zero."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--database-url", help="one database (default: $VECHAT_ADMIN_DATABASE_URL)")
    group.add_argument("--all", action="store_true", help="every database of $VECHAT_REGISTRY")


SERVE_LIMIT_FLAGS = (
    ("--max-header-bytes", "max_header_bytes", "BYTES", "request line + headers; 431 above"),
    ("--header-timeout", "header_timeout_s", "S", "to finish the headers; 408 after"),
    ("--body-timeout", "body_timeout_s", "S", "silence within a body; 408 after"),
    ("--keepalive-timeout", "keepalive_timeout_s", "S", "an idle connection is closed after"),
    ("--max-connections", "max_connections", "N", "open connections; 503 above"),
)
"""`serve`'s flags for the limits of api/protocol.py: (flag, Settings field, unit, meaning)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vechat-rls", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP/WebSocket API as role vechat_app")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: one per usable CPU, at most 8; docs/serving.md)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log a line per request (default: off; errors are always logged)",
    )
    serve.add_argument(
        "--allow-privileged-role",
        action="store_true",
        help="benchmarks only: start even if the role could bypass row-level security",
    )
    limits = serve.add_argument_group(
        "limits on each client, per process (docs/serving.md); each wins over its variable"
    )
    for flag, setting, unit, meaning in SERVE_LIMIT_FLAGS:
        limits.add_argument(
            flag,
            dest=setting,
            type=int,
            default=None,
            metavar=unit,
            help=f"{meaning} (${PREFIX}{setting.upper()}, default {getattr(Settings(), setting)})",
        )

    demo = sub.add_parser("demo", help="embedded PostgreSQL in ./.vechat/, demo data, serve")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--dir", default=".vechat", help="where the demo cluster lives")
    demo.add_argument(
        "--pg-port",
        type=int,
        default=None,
        help="the cluster's TCP port (default: chosen once and kept in DIR/demo.json)",
    )
    demo.add_argument("--no-serve", action="store_true", help="set up, print the links, and exit")

    db = sub.add_parser("db", help="migrations: migrate, rollback, status, verify")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = dbsub.add_parser("migrate", help="apply pending migrations and changed policies")
    _target_options(migrate)
    migrate.add_argument("--to", type=int, default=None, help="stop at migration N")
    migrate.add_argument(
        "--dry-run", action="store_true", help="print what would run, change nothing"
    )
    migrate.add_argument("--legacy-organisation-id", type=int, default=None)
    migrate.add_argument("--legacy-timezone", default=None)
    rollback = dbsub.add_parser("rollback", help="undo migrations down to N")
    _target_options(rollback)
    rollback.add_argument("--to", type=int, required=True, help="the migration to keep (0 = none)")
    rollback.add_argument("--dry-run", action="store_true")
    status = dbsub.add_parser("status", help="applied and pending migrations")
    _target_options(status)
    verify = dbsub.add_parser("verify", help="the deployment guide's checks and more")
    _target_options(verify)

    audit = sub.add_parser("audit", help="isolation audit; exit 1 on any finding")
    _target_options(audit)
    audit.add_argument("--json", action="store_true", help="machine-readable output")

    token = sub.add_parser(
        "token", help="mint a JWT for testing ($VECHAT_JWT_SECRET, or the demo's secret here)"
    )
    token.add_argument("--org", type=int, required=True)
    token.add_argument("--user", type=int, required=True)
    token.add_argument("--type", choices=["personnel", "client"], required=True)
    token.add_argument("--role", default=None)
    token.add_argument("--name", default=None)
    token.add_argument("--ttl", type=int, default=3600)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "db":
        from vechat_rls.cli import db

        return db.run(args)
    if args.command == "audit":
        from vechat_rls.cli import audit

        return audit.run(args)
    if args.command == "token":
        from vechat_rls.cli import token

        return token.run(args)
    if args.command == "serve":
        from vechat_rls.cli import serve

        return serve.run(args)
    if args.command == "demo":
        from vechat_rls.cli import demo

        return demo.run(args)
    raise CliError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"vechat-rls: {exc}", file=sys.stderr)
        return exc.exit_code
    except PgServerError as exc:  # the demo's embedded PostgreSQL would not start or stop
        print(f"vechat-rls: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
