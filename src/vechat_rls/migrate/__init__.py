"""The migration runner: applies db/migrations, db/functions and db/policies to each database.

Every target is handled on its own connection as the DBA (a superuser or the database owner):

1. take a session advisory lock (a second runner on the same database gets a one-line error);
2. read the ledger (schema `vechat`) and refuse to go on if an applied migration's file changed;
3. apply `db/policies/00_roles.sql` as the DBA (cluster roles, idempotent) and create the ledger;
4. apply each pending migration in its own transaction under `SET LOCAL ROLE vechat_owner`, so that
   every object it creates is owned by vechat_owner, its verify step and ledger row in the same
   transaction — or, on a database that holds the legacy VeChat tables and no ledger, adopt them
   in place of migration 0001 (`legacy`);
5. when the database is at the newest migration, re-apply the repeatable files whose checksum
   changed (all of them after any migration) in one transaction: first `db/functions/`, then
   `db/policies/` (docs/migrations.md says why there are three tiers).

By concern: `layout` (the files), `targets` (which databases), `connection`, `ledger`, `steps`
(one migration or tier), `runner` (`migrate`, `rollback`), `verify` (`status`, `verify`),
`legacy` (adoption and its rollback). The command line is `vechat_rls.cli.db`.
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
