"""`vechat-rls token`: print a token signed with `VECHAT_JWT_SECRET` (HS256), for testing.

Without `VECHAT_JWT_SECRET`, in the folder where `vechat-rls demo` (`make run`) was set up, it
signs with the demo's own secret (`.vechat/demo.json`), so the demo's server accepts the token.
"""

from __future__ import annotations

import argparse
import sys

from vechat_rls import demo
from vechat_rls.auth import mint_token
from vechat_rls.cli import CliError
from vechat_rls.config import ConfigError, Settings
from vechat_rls.identity import ROLE_PATTERN


def run(args: argparse.Namespace) -> int:
    """`vechat-rls token --org N --user N --type T [--role R] [--name S] [--ttl S]`."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    secret = settings.jwt_secret
    if not secret:
        secret = demo.demo_secret()
        state_file = demo.DEFAULT_DIRECTORY / demo.STATE_FILE
        if secret is None:
            raise CliError(
                "VECHAT_JWT_SECRET is not set (the token command signs with HS256), and there is "
                f"no demo here ({state_file}): set it to the server's secret — for a demo, the "
                f"jwt_secret in the demo directory's {demo.STATE_FILE} — or run this where "
                "`vechat-rls demo` (make run) was set up"
            )
        print(f"vechat-rls: signing with the demo's secret ({state_file})", file=sys.stderr)
    for value, option in ((args.org, "--org"), (args.user, "--user"), (args.ttl, "--ttl")):
        if value <= 0:
            raise CliError(f"{option} must be a positive integer")
    if args.role is not None and not ROLE_PATTERN.fullmatch(args.role):
        raise CliError("--role must be a short identifier (letters, digits, _ . : -)")
    token = mint_token(
        organisation_id=args.org,
        user_id=args.user,
        user_type=args.type,
        role=args.role,
        name=args.name,
        ttl_s=args.ttl,
        key=secret,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    sys.stdout.write(token + "\n")
    return 0
