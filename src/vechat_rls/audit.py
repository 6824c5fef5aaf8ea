"""The isolation audit: what `vechat_audit.findings()` and `vechat_audit.tables` say, per database.

The checks themselves live in the database (db/schema/90_audit.sql), so that an auditor in psql and
`vechat-rls audit` see exactly the same thing; this module only fetches them (vechat_rls.cli.audit
prints them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vechat_rls.migrate import MigrationError, Target, fetch_rows, mask_url

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

    @property
    def verdict(self) -> bool | None:
        """`clean`, or None for a database that could not be audited: nothing is known of it."""
        return None if self.error is not None else self.clean

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.target.name,
            "url": mask_url(self.target.admin_url),
            "clean": self.verdict,
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
