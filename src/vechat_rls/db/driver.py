"""The driver (asyncpg) under our names: its types, timeouts, and what its failures mean.

`UNREACHABLE_ERRORS` are the failures that mean the database is away rather than a bad query;
the API answers them, and `DatabaseUnavailable`, with 503 and `Retry-After`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import asyncpg.pool

# A pooled connection (a proxy) or a connection of its own. The stubs' generic classes exist
# only for the type checker; at run time the names are the plain classes.
if TYPE_CHECKING:
    Connection: TypeAlias = (
        asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]
    )
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.pool.PoolConnectionProxy
    Pool = asyncpg.Pool
Record = asyncpg.Record
PostgresError = asyncpg.PostgresError  # every error the server reports; `.sqlstate` says which

CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 5.0
PING_TIMEOUT_S = 2.0
RETRY_AFTER_S = 2

# Errors that mean "the database is not reachable right now", as opposed to a bad query:
# the API answers them 503 + Retry-After wherever they are raised.
UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable, DNS
    asyncio.TimeoutError,  # connect or acquire timed out
    asyncpg.ConnectionDoesNotExistError,  # the connection died under a query
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03 starting up / shutting down
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.TooManyConnectionsError,  # 53300
    # The protocol state of a pooled connection broke under a server restart ("cannot switch to
    # state …"): the connection is unusable, the database is momentarily away.
    asyncpg.InternalClientError,
)
PING_FAILURES: tuple[type[Exception], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
)
CONNECT_FAILURES: tuple[type[Exception], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, pg_hba
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,  # no such database
)


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the API answers 503 with `Retry-After`."""

    def __init__(self, message: str = "database unavailable", retry_after: int = RETRY_AFTER_S):
        super().__init__(message)
        self.retry_after = retry_after


class RoleSafetyError(Exception):
    """The application's role could switch row-level security off; `serve` refuses to start."""


class ConnectionBudgetExhausted(TimeoutError):
    """No connection could be opened within the process's cap (`VECHAT_POOL_TOTAL_MAX`) in time.

    A `TimeoutError`, so everything that maps an unreachable database to 503 maps this too.
    """


# Refusals that no waiting will cure: the URL names a role or database that is not there, or the
# password is wrong. Anything else that stops a connection is an outage.
CONFIGURATION_FAILURES: tuple[type[Exception], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


def is_outage(exc: BaseException) -> bool:
    """`exc` (a `DatabaseUnavailable`) means the database is away, not misconfigured."""
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
    return not isinstance(cause, CONFIGURATION_FAILURES)
