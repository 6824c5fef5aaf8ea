"""`db migrate` and `db rollback` on one target: what to apply, in which order, under the lock."""

from __future__ import annotations

import time
from collections.abc import Sequence

from vechat_rls.migrate import legacy
from vechat_rls.migrate.connection import admin_connection, runner_lock
from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.layout import ROLES_FILE, Layout, PolicyFile
from vechat_rls.migrate.ledger import (
    check_ledger,
    pending_migrations,
    read_ledger,
    stale_functions,
    stale_policies,
    unknown_migrations,
)
from vechat_rls.migrate.steps import (
    Say,
    apply_migration,
    apply_repeatables,
    bootstrap,
    check_can_become_owner,
    install_context_keys,
    revert_migration,
)
from vechat_rls.migrate.targets import Target

UP_TO_DATE = "functions and policies up to date"


def names(files: Sequence[PolicyFile]) -> str:
    return ", ".join(p.name for p in files)


def migrate(
    target: Target, layout: Layout, say: Say, *, to: int | None = None, dry_run: bool = False
) -> None:
    """Apply pending migrations (up to `to`), then changed function and policy files."""
    if to is not None and to not in {0, *layout.by_version()}:
        raise MigrationError(f"--to {to}: there is no migration {to:04d}")
    with admin_connection(target) as conn, runner_lock(conn, target):
        ledger = read_ledger(conn)
        check_ledger(layout, ledger)
        if to is not None and to < ledger.current:
            raise MigrationError(
                f"the database is at {ledger.current:04d}, past --to {to:04d}: use db rollback"
            )
        todo = pending_migrations(layout, ledger, to)
        at_head = to is None or to >= layout.head
        policies = stale_policies(layout, ledger, all_of_them=bool(todo)) if at_head else []
        functions = stale_functions(layout, ledger, all_of_them=bool(todo)) if at_head else []
        # A database with the legacy VeChat tables and no 0001 is adopted in place (legacy/).
        shape = legacy.detect(conn) if todo and todo[0].version == 1 else None
        if dry_run:
            roles = f" after {ROLES_FILE}" if layout.roles else ""
            for migration in todo:
                if shape is not None and migration is todo[0]:
                    found = legacy.plan(conn, shape, migration, target, say)
                    if found:
                        raise MigrationError(
                            f"dry run: adoption would be refused ({len(found)} problem(s) above); "
                            "nothing was changed"
                        )
                    continue
                say(f"would apply {migration.label}{roles}")
            if functions:
                say(f"would apply functions: {names(functions)}")
            if policies:
                say(f"would apply policies: {names(policies)}")
            if not todo and not policies and not functions:
                say(f"nothing to do: at {at(layout, ledger.current)}, {UP_TO_DATE}")
            return
        if shape is None:
            bootstrap(conn, layout, target)
            check_can_become_owner(conn)
        for migration in todo:
            started = time.monotonic()
            if shape is not None and migration is todo[0]:
                # Roles and ledger inside the adoption's transaction: a refusal leaves nothing.
                legacy.adopt(conn, shape, migration, layout, target, say)
            else:
                apply_migration(conn, migration, target)
            say(f"applied {migration.label} ({time.monotonic() - started:.2f} s)")
        if functions or policies:
            started = time.monotonic()
            apply_repeatables(conn, layout, functions, policies, target)
            elapsed = f"({time.monotonic() - started:.2f} s)"
            if functions:
                say(f"applied functions: {names(functions)}")
            if policies:
                say(f"applied policies: {names(policies)}")
            say(f"repeatable files applied {elapsed}")
        current = max(ledger.current, *(m.version for m in todo)) if todo else ledger.current
        added = install_context_keys(conn, target) if at_head else []
        for key_id in added:
            say(f"added context key {key_id} (VECHAT_CONTEXT_KEY)")
        if not todo and not policies and not functions and not added:
            say(f"nothing to do: at {at(layout, current)}, {UP_TO_DATE}")
        else:
            say(f"now at {at(layout, current)}")


def rollback(target: Target, layout: Layout, say: Say, *, to: int, dry_run: bool = False) -> None:
    """Run the downs of every applied migration above `to`, newest first."""
    if to < 0:
        raise MigrationError("--to must be 0 or a migration number")
    with admin_connection(target) as conn, runner_lock(conn, target):
        ledger = read_ledger(conn)
        unknown = unknown_migrations(layout, ledger)
        if any(a.version > to for a in unknown):
            raise MigrationError(
                f"migration {unknown[-1].label} is applied but has no files here: "
                "cannot roll it back"
            )
        files = layout.by_version()
        todo = [files[v] for v in sorted(ledger.migrations, reverse=True) if v > to]
        if not todo:
            say(f"nothing to roll back: at {at(layout, ledger.current)}")
            return
        adoption = legacy.read_adoption(conn) if 1 in ledger.migrations else None
        if adoption is not None and not dry_run and any(m.version == 1 for m in todo):
            # Restoring the legacy shape may refuse (more than one organisation): say so before
            # the migrations above 0001 are rolled back, so that a refusal changes nothing.
            legacy.check_restorable(conn)
        for migration in todo:
            adopted = adoption is not None and migration.version == 1
            if dry_run:
                if adopted and adoption is not None:
                    legacy.restore_plan(conn, adoption, migration, say)
                else:
                    say(f"would roll back {migration.label}")
                continue
            started = time.monotonic()
            if adopted and adoption is not None:
                legacy.restore(conn, adoption, migration, target, say)
            else:
                revert_migration(conn, migration, target)
            say(f"rolled back {migration.label} ({time.monotonic() - started:.2f} s)")
        if not dry_run:
            say(f"now at {at(layout, to)}")


def at(layout: Layout, version: int) -> str:
    if version == 0:
        return "0000 (no migration applied)"
    migration = layout.by_version().get(version)
    return migration.label if migration else f"{version:04d}"
