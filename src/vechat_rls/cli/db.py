"""`vechat-rls db migrate|rollback|status|verify`: one block of lines per database, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import psycopg

from vechat_rls import migrate
from vechat_rls.cli import EXIT_FAILED, EXIT_FINDING, EXIT_OK, CliError
from vechat_rls.migrate import MigrationError, Target, TargetError, mask_url, one_line

Say = Callable[[str], None]
Action = Callable[[Target, Say], bool | None]


def targets_from_args(args: argparse.Namespace) -> list[Target]:
    """`--database-url`, `--all` (the registry) or `$VECHAT_ADMIN_DATABASE_URL`; a usage error
    when none names a database."""
    try:
        return migrate.targets_for(
            getattr(args, "database_url", None),
            every_database=bool(getattr(args, "all", False)),
            legacy_organisation_id=getattr(args, "legacy_organisation_id", None),
            legacy_timezone=getattr(args, "legacy_timezone", None),
        )
    except TargetError as exc:
        raise CliError(str(exc)) from None


@dataclass
class TargetReport:
    """Prints one target's lines, indented under a header when there are several targets."""

    target: Target
    many: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def begin(self) -> None:
        if self.many:
            print(
                f"[{self.target.name}] {mask_url(self.target.admin_url)}", file=self.out, flush=True
            )

    def say(self, line: str) -> None:
        print(("  " if self.many else "") + line, file=self.out, flush=True)

    def fail(self, message: str) -> None:
        prefix = f"{self.target.name}: " if self.many else ""
        print(f"vechat-rls: {prefix}{message}", file=self.err, flush=True)


def run_each(targets: Sequence[Target], action: Action) -> int:
    """Run `action` on every target; one failing target does not stop the others. Exit status:
    EXIT_FAILED if any target failed, else EXIT_FINDING if any check failed, else EXIT_OK."""
    failed: list[str] = []
    findings: list[str] = []
    many = len(targets) > 1
    for target in targets:
        report = TargetReport(target, many)
        report.begin()
        try:
            ok = action(target, report.say)
        except MigrationError as exc:
            report.fail(str(exc))
            failed.append(target.name)
            continue
        except psycopg.Error as exc:  # a query of ours failed: still one line, never a traceback
            report.fail(one_line(exc, target))
            failed.append(target.name)
            continue
        except OSError as exc:
            report.fail(f"{exc.filename or ''}: {exc.strerror or exc}")
            failed.append(target.name)
            continue
        if ok is False:
            findings.append(target.name)
    if many:
        good = len(targets) - len(failed) - len(findings)
        summary = f"{good} of {len(targets)} databases ok"
        if findings:
            summary += f"; checks failed: {', '.join(findings)}"
        if failed:
            summary += f"; could not be done: {', '.join(failed)}"
        print(summary, flush=True)
    if failed:
        return EXIT_FAILED
    return EXIT_FINDING if findings else EXIT_OK


def run(args: argparse.Namespace) -> int:
    targets = targets_from_args(args)
    try:
        layout = migrate.load_layout()
    except MigrationError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    command = args.db_command
    if command == "migrate":
        return run_each(
            targets,
            lambda t, say: migrate.migrate(t, layout, say, to=args.to, dry_run=args.dry_run),
        )
    if command == "rollback":
        return run_each(
            targets,
            lambda t, say: migrate.rollback(t, layout, say, to=args.to, dry_run=args.dry_run),
        )
    if command == "status":
        return run_each(targets, lambda t, say: migrate.status(t, layout, say))
    if command == "verify":
        return run_each(targets, lambda t, say: migrate.verify(t, layout, say))
    raise CliError(f"unknown db command {command!r}")
