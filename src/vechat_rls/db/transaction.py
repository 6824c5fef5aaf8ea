"""The tenant transaction: every statement of a request runs in one that acts for its caller.

`BEGIN` and `vechat.enter(<token signed for this connection>)` (db/context.py) travel together in a
single round trip: the policies read the context that call verified, never a setting a statement
could change. `tenant()` yields a `Transaction`, which also carries the recipients its writes name
(`name_recipients`) to the ringer after COMMIT (realtime/__init__.py has the glossary).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import asyncpg.pool

from vechat_rls.db import context
from vechat_rls.db.driver import (
    ACQUIRE_TIMEOUT_S,
    CONNECT_FAILURES,
    UNREACHABLE_ERRORS,
    Connection,
    DatabaseUnavailable,
    Pool,
    Record,
)
from vechat_rls.identity import ROLE_PATTERN, USER_TYPES, Identity, User

if TYPE_CHECKING:
    from vechat_rls.db.pools import Database

log = logging.getLogger(__name__)

Ring: TypeAlias = Callable[[int, frozenset[tuple[str, int]] | None], None]
"""The ringer's `ring`: (organisation, the (user_type, user_id) of the recipients named, or None
for "anyone of it")."""


_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"


def begin_sql(
    identity: Identity,
    *,
    readonly: bool,
    statement_timeout_ms: int | None,
    doorbell_off: bool = False,
    token: str | None = None,
) -> str:
    """`BEGIN` plus the tenant context as one simple-protocol batch (one round trip).

    With a `token` (db/context.py) the context is `SELECT vechat.enter(token)`, the only one the
    database accepts; `READ ONLY` follows it (entering writes the context row). Without one, the
    settings as before signed contexts (`SET LOCAL vechat.organisation_id = …`): what the
    benchmark compares with (`VECHAT_CONTEXT_MODE=settings`); a database of this release gives
    such a transaction no rows at all. A batch takes no parameters, so values are rendered here:
    integers via `int`, the user type from its two allowed words, the role by `ROLE_PATTERN`
    (letters, digits, `_.:-`), the token from those, and all quoted anyway — nothing from a
    request reaches this text unchecked. `doorbell_off` silences the event trigger's NOTIFY for
    this transaction (the caller rings after COMMIT instead).
    """
    if identity.user_type not in USER_TYPES:
        raise ValueError("invalid user_type")
    role = identity.role or ""
    if role and not ROLE_PATTERN.fullmatch(role):
        raise ValueError("invalid role")
    settings: list[tuple[str, str]] = []
    if token is None:
        settings += [
            ("vechat.organisation_id", str(int(identity.organisation_id))),
            ("vechat.user_id", str(int(identity.user_id))),
            ("vechat.user_type", identity.user_type),
            ("vechat.role", role),
        ]
    if statement_timeout_ms is not None:
        settings.append(("statement_timeout", str(int(statement_timeout_ms))))
    if doorbell_off:
        settings.append(("vechat.doorbell", "off"))
    sets = "".join(f"; SET LOCAL {name} = {_literal(value)}" for name, value in settings)
    if token is None:
        return f"{_BEGIN}{' READ ONLY' if readonly else ''}{sets}"
    enter = f"; SELECT vechat.enter({_literal(token)})"
    return f"{_BEGIN}{enter}{'; SET TRANSACTION READ ONLY' if readonly else ''}{sets}"


def _literal(value: str) -> str:
    if "\x00" in value or "\\" in value:
        raise ValueError("unquotable value")
    return "'" + value.replace("'", "''") + "'"


class Transaction:
    """A tenant transaction in progress: its connection, whom it acts for, whom it writes for.

    `tenant()` yields one. Statements run through `execute`, `fetch`, `fetchrow` and `fetchval`
    (asyncpg's, on the transaction's connection). A write that knows whom its events are for
    says so with `name_recipients`; the ringer then names them alone (module docstring).
    """

    __slots__ = ("_named", "connection", "identity")

    def __init__(self, connection: Connection, identity: Identity, *, rings: bool) -> None:
        self.connection = connection
        self.identity = identity
        self._named: set[User] | None = set() if rings else None

    def execute(self, query: str, *args: Any, timeout: float | None = None) -> Awaitable[str]:
        return self.connection.execute(query, *args, timeout=timeout)

    def fetch(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Awaitable[list[Record]]:
        return self.connection.fetch(query, *args, timeout=timeout)

    def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Awaitable[Record | None]:
        return self.connection.fetchrow(query, *args, timeout=timeout)

    def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Awaitable[Any]:
        return self.connection.fetchval(query, *args, column=column, timeout=timeout)

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """Have `callback` told of every statement (tests count round trips with it)."""
        self.connection.add_query_logger(callback)

    def remove_query_logger(self, callback: Callable[[Any], None]) -> None:
        self.connection.remove_query_logger(callback)

    async def sign(self, identity: Identity) -> str:
        """A token for `identity` on this transaction's connection (for `vechat.enter` and the
        functions that act for several users: `vechat.set_leases`)."""
        return await context.sign_for(self.connection, identity)

    async def act_as(self, identity: Identity) -> None:
        """From the next statement on, act for `identity` (a signed context, like `tenant()`'s).

        Not in a `readonly` transaction: entering a context writes its (unlogged) row.
        """
        await self.connection.execute("SELECT vechat.enter($1)", await self.sign(identity))
        self.identity = identity

    def name_recipients(self, recipients: Iterable[User]) -> None:
        """Promise that every event this transaction appends is for one of `recipients`.

        The ringer then rings for them alone, and only they are read back; without it the ring
        names the whole organisation, which is always correct. A no-op where nothing rings.
        """
        if self._named is not None:
            self._named.update(recipients)

    @property
    def named_recipients(self) -> frozenset[tuple[str, int]] | None:
        """The recipients named, as a ring names them; None when none were (anyone may be)."""
        if not self._named:
            return None
        return frozenset((user.user_type, user.user_id) for user in self._named)


@contextlib.asynccontextmanager
async def tenant(
    pool: Pool | Database,
    identity: Identity,
    *,
    readonly: bool = False,
    statement_timeout_ms: int | None = None,
    appends_events: bool = True,
) -> AsyncIterator[Transaction]:
    """A transaction acting for `identity`; commits on success.

    `readonly=True` runs `READ ONLY` (a write raises SQLSTATE 25006). An exception raised in the
    block rolls back and propagates unchanged (api/problems.py maps `UNREACHABLE_ERRORS` to
    503); failing to acquire, begin or commit because the database is gone raises
    `DatabaseUnavailable`. A write transaction on a `Database` with a ringer rings after COMMIT
    (module doc); `appends_events=False` marks one that appends no events (the hub's own
    bookkeeping, typing, presence): it rings nothing, and the event trigger stays as it is.
    """
    ring: Ring | None = None
    signed = True
    if not isinstance(pool, asyncpg.Pool):  # a Database
        if statement_timeout_ms is None:
            statement_timeout_ms = pool.settings.statement_timeout_ms
        if appends_events and not readonly:
            ring = pool.ring
        signed = pool.settings.context_mode == "signed"
        pool = pool.pool
    conn = await _acquire(pool)
    try:
        try:
            token = await context.sign_for(conn, identity) if signed else None
            sql = begin_sql(
                identity,
                readonly=readonly,
                statement_timeout_ms=statement_timeout_ms,
                doorbell_off=ring is not None,
                token=token,
            )
            await conn.execute(sql)
        except UNREACHABLE_ERRORS as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        transaction = Transaction(conn, identity, rings=ring is not None)
        try:
            yield transaction
        except asyncpg.InternalClientError:
            conn.terminate()  # broken protocol state: never hand it to another request
            raise
        except BaseException:
            # A failed rollback leaves the connection in a transaction; release then rolls back
            # or discards it, so the original error is the one that propagates. A connection
            # the server killed mid-query is detached from its proxy: even `is_closed()` raises.
            with contextlib.suppress(Exception):
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
            raise
        try:
            await conn.execute("COMMIT")
        except UNREACHABLE_ERRORS as exc:
            raise DatabaseUnavailable("database connection lost during COMMIT") from exc
        if ring is not None:
            ring(identity.organisation_id, transaction.named_recipients)
    finally:
        await _release(pool, conn)


async def _acquire(pool: Pool) -> asyncpg.pool.PoolConnectionProxy[Record]:
    """A pooled connection; `DatabaseUnavailable` when none can be had."""
    try:
        conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
    except CONNECT_FAILURES as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    return conn


async def _release(pool: Pool, conn: asyncpg.pool.PoolConnectionProxy[Record]) -> None:
    try:
        await pool.release(conn)
    except Exception:  # the pool has already discarded the connection; nothing to add
        log.debug("connection discarded on release", exc_info=True)


Signer: TypeAlias = Callable[[Identity], str]
"""Signs a context for the connection a statement runs on (`fetch_alone`'s `arguments`)."""


async def fetch_alone(
    pool: Pool | Database, sql: str, arguments: Callable[[Signer], Sequence[Any]]
) -> list[Record]:
    """The rows of one statement run on its own: its own implicit transaction, one round trip.

    Only for a statement that enters its tenant contexts itself (`vechat.read_events`): a pooled
    connection outside `tenant()` acts for nobody, so any other statement sees no tenant row at
    all. `arguments` gets a signer for the connection the statement runs on (tokens are bound to
    it) and returns the statement's arguments. Failing to reach the database raises
    `DatabaseUnavailable`, like `tenant()`; the statement timeout is enforced from here.
    """
    timeout_s: float | None = None
    if not isinstance(pool, asyncpg.Pool):  # a Database
        if pool.settings.statement_timeout_ms:
            timeout_s = pool.settings.statement_timeout_ms / 1000
        pool = pool.pool
    conn = await _acquire(pool)
    try:
        pid, start = await context.backend_of(conn)
        args = arguments(lambda identity: context.sign(identity, pid, start))
        rows: list[Record] = await conn.fetch(sql, *args, timeout=timeout_s)
        return rows
    except UNREACHABLE_ERRORS as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except asyncpg.InternalClientError:
        conn.terminate()  # broken protocol state: never hand it to another caller
        raise
    finally:
        await _release(pool, conn)
