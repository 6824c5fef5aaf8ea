"""`db status` and `db verify`: the ledger against the files, the old guide's checks, RLS, audit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from vechat_rls.migrate import legacy
from vechat_rls.migrate.connection import admin_connection
from vechat_rls.migrate.layout import Layout
from vechat_rls.migrate.ledger import (
    changed_migrations,
    pending_migrations,
    read_ledger,
    stale_functions,
    stale_policies,
    unknown_migrations,
)
from vechat_rls.migrate.runner import at, names
from vechat_rls.migrate.steps import Say
from vechat_rls.migrate.targets import Target

ORIGINAL_TABLES = (
    "vechat_conversations",
    "vechat_messages",
    "vechat_presence",
    "vechat_user_settings",
)


def status(target: Target, layout: Layout, say: Say) -> bool:
    """List applied, changed, unknown and pending migrations and policies; False if any is off."""
    with admin_connection(target) as conn:
        ledger = read_ledger(conn)
        adopted = legacy.status_note(conn) if 1 in ledger.migrations else None
    files = layout.by_version()
    changed = {m.version for m in changed_migrations(layout, ledger)}
    for version in sorted(set(files) | set(ledger.migrations)):
        applied = ledger.migrations.get(version)
        if applied is None:
            say(f"pending  {files[version].label}")
            continue
        when = f"{applied.applied_at:%Y-%m-%d %H:%M:%S%z} by {applied.applied_by}"
        if version not in files:
            say(f"unknown  {applied.label}  applied {when}; no such file in this release")
        elif version in changed:
            say(f"CHANGED  {applied.label}  applied {when}; the file differs from what was applied")
        else:
            note = f"; {adopted}" if adopted and version == 1 else ""
            say(f"applied  {applied.label}  {when}{note}")
    for tier, tier_files, stale in (
        ("functions", layout.functions, stale_functions(layout, ledger)),
        ("policies", layout.policies, stale_policies(layout, ledger)),
    ):
        say(
            f"{tier}: {len(tier_files) - len(stale)} of {len(tier_files)} applied as they are"
            + (f"; to apply: {names(stale)}" if stale else "")
        )
    pending = pending_migrations(layout, ledger)
    say(f"at {at(layout, ledger.current)}; {len(pending)} pending")
    return not changed and not unknown_migrations(layout, ledger)


# --- verify: the deployment guide's checks, and more ---------------------------------------------

ORGANISATION_COLUMNS_SQL = """
SELECT table_name, column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_schema = 'public'
  AND table_name IN ('vechat_conversations', 'vechat_messages',
                     'vechat_presence', 'vechat_user_settings')
  AND column_name = 'organisation_id'
ORDER BY table_name
"""

TENANT_TABLES_SQL = r"""
SELECT c.relname AS table_name,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       EXISTS (SELECT FROM pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'organisation_id' AND NOT a.attisdropped)
           AS has_organisation_id
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'vechat\_%'
ORDER BY c.relname
"""

WHO_AM_I_SQL = (
    "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)

COUNT_SQL = "SELECT count(*) AS total, count(organisation_id) AS with_organisation FROM public.{}"

HAS_AUDIT_SQL = "SELECT to_regprocedure('vechat_audit.findings()') IS NOT NULL"
FINDINGS_COUNT_SQL = "SELECT count(*) FROM vechat_audit.findings()"


@dataclass
class Checks:
    """A verify report: one line per check, with the details under it."""

    say: Say
    passed: int = 0
    failed: int = 0

    def check(self, ok: bool, title: str, details: Sequence[str] = ()) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.say(f"{'ok  ' if ok else 'FAIL'}  {title}")
        for line in details:
            self.say(f"        {line}")


def verify(target: Target, layout: Layout, say: Say) -> bool:
    """The deployment guide's checks plus ledger, RLS and audit state; False if any check fails."""
    checks = Checks(say)
    with admin_connection(target) as conn:
        ledger = read_ledger(conn)
        changed = changed_migrations(layout, ledger)
        unknown = unknown_migrations(layout, ledger)
        pending = pending_migrations(layout, ledger)
        checks.check(
            ledger.exists and not changed and not unknown and not pending,
            f"migrations: at {at(layout, ledger.current)} of {at(layout, layout.head)}",
            [f"changed since applied: {m.label}" for m in changed]
            + [f"applied, unknown to this release: {a.label}" for a in unknown]
            + [f"pending: {m.label}" for m in pending],
        )
        for tier, files, stale in (
            ("functions", layout.functions, stale_functions(layout, ledger)),
            ("policies", layout.policies, stale_policies(layout, ledger)),
        ):
            checks.check(
                not stale,
                f"{tier}: {len(files) - len(stale)} of {len(files)} files applied as they are",
                [f"not applied as it is: {p.name}" for p in stale],
            )

        adoption = legacy.verify_report(conn) if ledger.exists else None
        if adoption is not None:
            checks.check(*adoption)

        # The old deployment guide's own queries, as it printed them.
        columns = conn.execute(ORGANISATION_COLUMNS_SQL).fetchall()
        checks.check(
            len(columns) == len(ORIGINAL_TABLES),
            f"organisation_id in the four original tables: {len(columns)} rows "
            f"(expected {len(ORIGINAL_TABLES)})",
            [f"{t}.{c}  {d}  {'NULL' if n == 'YES' else 'NOT NULL'}" for t, c, d, n in columns]
            + [f"missing: {t}" for t in ORIGINAL_TABLES if t not in {row[0] for row in columns}],
        )

        tables = conn.execute(TENANT_TABLES_SQL).fetchall()
        who = conn.execute(WHO_AM_I_SQL).fetchone()
        user, superuser, bypass = who if who else ("?", False, False)
        if superuser or bypass:
            details, ok = [], True
            for name, _enabled, _forced, has_org in tables:
                if not has_org:
                    details.append(f"{name}: no organisation_id column")
                    ok = False
                    continue
                row = conn.execute(sql.SQL(COUNT_SQL).format(sql.Identifier(name))).fetchone()
                total, with_org = row if row else (0, 0)
                ok = ok and total == with_org
                details.append(f"{name}: {total} rows, {with_org} with an organisation")
            why = "a superuser" if superuser else "BYPASSRLS"
            checks.check(
                ok,
                f"rows with an organisation (counted as {user}, {why}: "
                "row-level security hides nothing)",
                details,
            )
        else:
            say(
                f"skip  rows with an organisation: {user} is subject to row-level security and "
                "would count 0; run verify as a superuser"
            )

        off = [
            f"{n}: {'enabled' if e else 'NOT enabled'}, {'forced' if f else 'NOT forced'}"
            for n, e, f, _o in tables
            if not (e and f)
        ]
        checks.check(
            bool(tables) and not off,
            f"row-level security enabled and forced: {len(tables) - len(off)} of "
            f"{len(tables)} public.vechat_% tables",
            off,
        )

        row = conn.execute(HAS_AUDIT_SQL).fetchone()
        if not (row and row[0]):
            checks.check(False, "isolation audit: schema vechat_audit is missing")
        else:
            row = conn.execute(FINDINGS_COUNT_SQL).fetchone()
            findings = row[0] if row else 0
            checks.check(
                findings == 0,
                f"isolation audit: {findings} findings"
                + (" (details: vechat-rls audit)" if findings else ""),
            )
    say(f"verify: {checks.passed} passed, {checks.failed} failed")
    return checks.failed == 0
