"""`vechat-rls demo`: set the demo up (vechat_rls.demo), print how to use it, and serve it."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from types import FrameType

from vechat_rls import demo
from vechat_rls.cli import CliError
from vechat_rls.cli.serve import serve
from vechat_rls.pgserver import PgServerError


def run(args: argparse.Namespace) -> int:
    """`vechat-rls demo [--host H] [--port P] [--dir D] [--pg-port N] [--no-serve]`."""
    directory = Path(args.dir).resolve()
    print(f"vechat-rls demo: PostgreSQL cluster in {directory}/postgres")
    try:
        pg, env = demo.prepare(
            directory, pg_port=args.pg_port, say=lambda line: print(f"  db: {line}")
        )
    except PgServerError as exc:
        raise CliError(
            f"the demo's PostgreSQL did not start ({exc}); if its port is taken, choose another "
            "with --pg-port N (it is kept for the next runs)"
        ) from None
    os.environ.update(env)
    base_url = f"http://{args.host}:{args.port}"
    # The unix socket uses trust authentication: no password to print.
    print(f"  psql as the DBA: psql -h {pg.socket_dir} -p {pg.port} -U postgres {demo.DATABASE}")
    # Over TCP, for what takes a URL (db status, audit, a registry's admin_url); the port is
    # kept in demo.json, so the URL outlives restarts. The password is the local cluster's own.
    print(f"  DBA database URL (db status, audit, a registry): {env['VECHAT_ADMIN_DATABASE_URL']}")
    print(f"    e.g. vechat-rls audit --database-url '{env['VECHAT_ADMIN_DATABASE_URL']}'")
    print("Sign in as a demo user (links valid 12 h):")
    print("\n".join(demo.sign_in_links(base_url, env["VECHAT_JWT_SECRET"])))
    print("Mint a token for any user: vechat-rls token --org 1 --user 2 --type personnel")
    state_file = directory / demo.STATE_FILE
    if directory == demo.DEFAULT_DIRECTORY.resolve():
        print(f"  (run in this folder, it signs with the demo's secret from {state_file})")
    else:
        print(f"  (with VECHAT_JWT_SECRET set to the jwt_secret in {state_file})")
    print(f"API docs: {base_url}/schema/swagger")
    if args.no_serve:
        print(f"The cluster keeps running (port {pg.port}); `vechat-rls demo` reuses it.")
        return 0
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found:
    # make that one unwind (the default would end the process before the cluster is stopped).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return serve(host=args.host, port=args.port, workers=1, allow_privileged_role=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
        pg.stop()  # the data stays in the directory; the next demo starts it again


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
