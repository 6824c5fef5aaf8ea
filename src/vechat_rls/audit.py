"""The isolation audit: what `vechat_audit.findings()` and `vechat_audit.tables` say, per database.

The checks themselves live in the database (db/schema/90_audit.sql), so that an auditor in psql and
this command see exactly the same thing; this module only fetches and prints them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vechat_rls.migrate import (
    EXIT_FAILED,
    EXIT_FINDING,
    EXIT_OK,
    MigrationError,
    Target,
    TargetReport,
    fetch_rows,
    mask_url,
    targets_from_args,
)

HAS_AUDIT_SQL = "SELECT to_regprocedure('vechat_audit.findings()') IS NOT NULL AS present"
TABLES_SQL = """
SELECT table_schema, table_name, owner, rls_enabled, rls_forced, has_organisation_id,
       has_isolation_policy, policies
FROM vechat_audit.tables
ORDER BY table_schema, table_name
"""
FINDINGS_SQL = "SELECT severity, object, problem FROM vechat_audit.findings()"


@dataclass
class AuditResult:
    """One database's audit: its tables, its findings, or why it could not be audited."""

    target: Target
    tables: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def clean(self) -> bool:
        return self.error is None and not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.target.name,
            "url": mask_url(self.target.admin_url),
            "clean": self.clean,
            "error": self.error,
            "tables": self.tables,
            "findings": self.findings,
        }


def audit(target: Target) -> AuditResult:
    """Fetch the audit of one database; connection and missing-schema problems become `error`."""
    result = AuditResult(target)
    try:
        [present] = fetch_rows(target, [HAS_AUDIT_SQL])
        if not present[0]["present"]:
            raise MigrationError(
                "schema vechat_audit is missing: this database is not migrated "
                "(vechat-rls db migrate)"
            )
        result.tables, result.findings = fetch_rows(target, [TABLES_SQL, FINDINGS_SQL])
    except MigrationError as exc:
        result.error = str(exc)
    return result


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


def run(targets: Sequence[Target], *, as_json: bool) -> int:
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
        document = {
            "clean": all(r.clean for r in results),
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


def run_cli(args: argparse.Namespace) -> int:
    """`vechat-rls audit [--database-url URL | --all] [--json]`."""
    return run(targets_from_args(args), as_json=bool(args.json))
