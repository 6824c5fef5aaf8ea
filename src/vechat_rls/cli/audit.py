"""`vechat-rls audit`: each database's tables and findings, as text or JSON, and the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from vechat_rls.audit import AuditResult, audit
from vechat_rls.cli import EXIT_FAILED, EXIT_FINDING, EXIT_OK
from vechat_rls.cli.db import TargetReport, targets_from_args
from vechat_rls.migrate import Target


def _flag(value: bool) -> str:
    return "yes" if value else "NO"


def print_text(result: AuditResult, report: TargetReport) -> None:
    say = report.say
    if result.error is not None:
        report.fail(result.error)
        return
    width = max([len(t["table_name"]) for t in result.tables] + [len("table")])
    say(f"{'table':<{width}}  rls  forced  organisation_id  isolation policy  policies")
    for t in result.tables:
        flags = (
            f"{_flag(t['rls_enabled']):<3}  {_flag(t['rls_forced']):<6}  "
            f"{_flag(t['has_organisation_id']):<15}  {_flag(t['has_isolation_policy']):<16}"
        )
        say(f"{t['table_name']:<{width}}  {flags}  {len(t['policies'])}")
    if not result.tables:
        say("(no public.vechat_* tables)")
    if not result.findings:
        say("findings: none")
        return
    say(f"findings: {len(result.findings)}")
    for f in result.findings:
        say(f"  {f['severity']:<8}  {f['object']}: {f['problem']}")


def audit_all(targets: Sequence[Target], *, as_json: bool) -> int:
    """Audit every target. Exit status: 3 if any could not be audited, else 1 if any has a
    finding, else 0."""
    results = []
    many = len(targets) > 1
    for target in targets:
        result = audit(target)
        results.append(result)
        report = TargetReport(target, many)
        if as_json:
            if result.error is not None:
                report.fail(result.error)
            continue
        report.begin()
        print_text(result, report)
    if as_json:
        # A database that could not be audited is neither clean nor dirty: `null` with its
        # `error`, and the whole run is `null` unless a finding already makes it `false`.
        verdicts = [r.verdict for r in results]
        document = {
            "clean": False if False in verdicts else None if None in verdicts else True,
            "databases": [r.as_json() for r in results],
        }
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif many:
        dirty = [r.target.name for r in results if not r.clean and r.error is None]
        failed = [r.target.name for r in results if r.error is not None]
        print(
            f"{len(results) - len(dirty) - len(failed)} of {len(results)} databases clean"
            + (f"; findings: {', '.join(dirty)}" if dirty else "")
            + (f"; could not be audited: {', '.join(failed)}" if failed else "")
        )
    if any(r.error is not None for r in results):
        return EXIT_FAILED
    return EXIT_OK if all(r.clean for r in results) else EXIT_FINDING


def run(args: argparse.Namespace) -> int:
    """`vechat-rls audit [--database-url URL | --all] [--json]`."""
    return audit_all(targets_from_args(args), as_json=bool(args.json))
