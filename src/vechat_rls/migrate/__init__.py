"""The migration runner: applies db/migrations, db/functions and db/policies to each database.

Each target, on its own connection as the DBA, under an advisory lock: check the ledger's
checksums, apply the roles, apply each pending migration (or adopt the legacy VeChat tables in
place of 0001) in its own transaction as `vechat_owner`, then re-apply the repeatable tiers whose
checksum changed. By concern: `layout`, `targets`, `connection`, `ledger`, `steps`, `runner`,
`verify`, `legacy`; the command line is `vechat_rls.cli.db`.
"""

from vechat_rls.migrate.connection import LOCK_KEY, admin_connection, fetch_rows, one_line
from vechat_rls.migrate.errors import MigrationError, TargetError
from vechat_rls.migrate.layout import DB_DIR_ENV, Layout, Migration, PolicyFile, load_layout
from vechat_rls.migrate.runner import migrate, rollback
from vechat_rls.migrate.steps import (
    LOCK_TIMEOUT,
    OWNER_ROLE,
    act_as_owner,
    bootstrap,
    check_can_become_owner,
)
from vechat_rls.migrate.targets import (
    ADMIN_URL_ENV,
    REGISTRY_ENV,
    Target,
    mask_url,
    target_for_url,
    targets_for,
)
from vechat_rls.migrate.verify import ORIGINAL_TABLES, status, verify

__all__ = [
    "ADMIN_URL_ENV",
    "DB_DIR_ENV",
    "LOCK_KEY",
    "LOCK_TIMEOUT",
    "ORIGINAL_TABLES",
    "OWNER_ROLE",
    "REGISTRY_ENV",
    "Layout",
    "Migration",
    "MigrationError",
    "PolicyFile",
    "Target",
    "TargetError",
    "act_as_owner",
    "admin_connection",
    "bootstrap",
    "check_can_become_owner",
    "fetch_rows",
    "load_layout",
    "mask_url",
    "migrate",
    "one_line",
    "rollback",
    "status",
    "target_for_url",
    "targets_for",
    "verify",
]
