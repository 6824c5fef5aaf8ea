"""The application's database edge: pools, the tenant transaction, role safety.

Every request runs in one transaction that starts with its tenant context, `BEGIN` and
`vechat.enter(<signed token>)` in a single round trip (transaction.py, context.py). A write
transaction on a `Database` with a ringer silences the event trigger's NOTIFY in that same batch
and rings after COMMIT, naming the recipients the transaction named (realtime/__init__.py has
the glossary). Registry mode counts every connection against one `ConnectionBudget` (budget.py).

This package (with migrate/ and the realtime listener) is the only code that imports the driver;
everyone else uses the names exported here.
"""

from vechat_rls.db import context, seal
from vechat_rls.db.budget import ConnectionBudget, close_idle_connection
from vechat_rls.db.driver import (
    ACQUIRE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    PING_TIMEOUT_S,
    RETRY_AFTER_S,
    UNREACHABLE_ERRORS,
    Connection,
    ConnectionBudgetExhausted,
    DatabaseUnavailable,
    Pool,
    PostgresError,
    Record,
    RoleSafetyError,
    is_outage,
)
from vechat_rls.db.pools import (
    CONNECT_ERRORS,
    Database,
    connect,
    create_pool,
    init_connection,
    start_warm_up,
)
from vechat_rls.db.roles import check_role_safety, role_safety_problems
from vechat_rls.db.transaction import Ring, Signer, Transaction, begin_sql, fetch_alone, tenant

__all__ = [
    "ACQUIRE_TIMEOUT_S",
    "CONNECT_ERRORS",
    "CONNECT_TIMEOUT_S",
    "PING_TIMEOUT_S",
    "RETRY_AFTER_S",
    "UNREACHABLE_ERRORS",
    "Connection",
    "ConnectionBudget",
    "ConnectionBudgetExhausted",
    "Database",
    "DatabaseUnavailable",
    "Pool",
    "PostgresError",
    "Record",
    "Ring",
    "RoleSafetyError",
    "Signer",
    "Transaction",
    "begin_sql",
    "check_role_safety",
    "close_idle_connection",
    "connect",
    "context",
    "create_pool",
    "fetch_alone",
    "init_connection",
    "is_outage",
    "role_safety_problems",
    "seal",
    "start_warm_up",
    "tenant",
]
