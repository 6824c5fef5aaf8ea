"""The application's database edge: the `vechat_app` pool, the tenant transaction, role safety.

Every request runs in one transaction that starts with its tenant context — `BEGIN` and the
transaction-local settings travel together in a single round trip (architecture.md: round trips,
not policies, decide throughput). Because the context is transaction-local, a released connection
carries nothing into the next request, so the pool skips asyncpg's reset query on release.

The doorbell (`VECHAT_DOORBELL=coalesced`, realtime/ringer.py): when a `Database` has a ringer
(`Database.ring`), its write transactions also switch the event trigger's NOTIFY off in that same
BEGIN batch (`vechat.doorbell = 'off'`, no extra round trip) and, once COMMIT has succeeded, hand
their organisation to the ringer, which rings for many commits at once. A NOTIFY in the writing
transaction itself would take PostgreSQL's server-wide notify lock through that commit's WAL
flush, serialising every writer (architecture.md: "never ring one NOTIFY per message"). A
transaction that knows whom its events are for says so (`Transaction.name_recipients`), so that
only those users are read back; otherwise its ring names the organisation only.

Registry mode (fleet.py) opens one `Database` per registry database and counts every connection
the process opens to any of them against one `ConnectionBudget` (`VECHAT_POOL_TOTAL_MAX`).

This module (with migrate.py and the realtime listener) is the only one that imports the driver;
the API uses `Connection`, `PostgresError`, `DatabaseUnavailable` from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg
import asyncpg.pool
import msgspec

from vechat_rls.config import Settings, redact_url
from vechat_rls.identity import ROLE_PATTERN, USER_TYPES, Identity, User

log = logging.getLogger(__name__)

# What `tenant()` yields: a pooled connection (a proxy) or, for one-off checks, a plain one.
# At run time a single class, because Litestar resolves (and msgspec checks) handler annotations
# such as `conn: Connection`, and a union of two classes is not supported there.
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
_PING_FAILURES: tuple[type[Exception], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.PostgresError,
)
_CONNECT_FAILURES: tuple[type[Exception], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, pg_hba
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,  # no such database
)


Ring: TypeAlias = Callable[[int, frozenset[tuple[str, int]] | None], None]
"""The ringer's `ring`: (organisation, the (user_type, user_id) of the recipients named, or None
for "anyone of it")."""


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
_CONFIGURATION_FAILURES: tuple[type[Exception], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


def is_outage(exc: BaseException) -> bool:
    """`exc` (a `DatabaseUnavailable`) means the database is away, not misconfigured."""
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
    return not isinstance(cause, _CONFIGURATION_FAILURES)


# ---------------------------------------------------------------------------------------------
# The tenant transaction

_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"


def begin_sql(
    identity: Identity,
    *,
    readonly: bool,
    statement_timeout_ms: int | None,
    doorbell_off: bool = False,
) -> str:
    """`BEGIN` plus the tenant settings as one simple-protocol batch (one round trip).

    `SET LOCAL x = v` is `set_config('x', v, true)`; both batches measure the same
    (bench/roundtrips.py): the round trip they save is what counts. A batch takes no
    parameters, so values are rendered here: integers via `int`, the user type from its two
    allowed words, the role by `ROLE_PATTERN` (letters, digits, `_.:-`) and quoted anyway —
    nothing from a request reaches this text unchecked. `doorbell_off` silences the event
    trigger's NOTIFY for this transaction (the caller rings after COMMIT instead).
    """
    if identity.user_type not in USER_TYPES:
        raise ValueError("invalid user_type")
    role = identity.role or ""
    if role and not ROLE_PATTERN.fullmatch(role):
        raise ValueError("invalid role")
    settings = [
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
    return f"{_BEGIN}{' READ ONLY' if readonly else ''}{sets}"


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
    if isinstance(pool, Database):
        if statement_timeout_ms is None:
            statement_timeout_ms = pool.settings.statement_timeout_ms
        if appends_events and not readonly:
            ring = pool.ring
        pool = pool.pool
    sql = begin_sql(
        identity,
        readonly=readonly,
        statement_timeout_ms=statement_timeout_ms,
        doorbell_off=ring is not None,
    )
    conn = await _acquire(pool)
    try:
        try:
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
    except _CONNECT_FAILURES as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    return conn


async def _release(pool: Pool, conn: asyncpg.pool.PoolConnectionProxy[Record]) -> None:
    try:
        await pool.release(conn)
    except Exception:  # the pool has already discarded the connection; nothing to add
        log.debug("connection discarded on release", exc_info=True)


async def fetch_alone(pool: Pool | Database, sql: str, *args: Any) -> list[Record]:
    """The rows of one statement run on its own: its own implicit transaction, one round trip.

    Only for a statement that sets its tenant context itself (`vechat.read_events`): a pooled
    connection outside `tenant()` carries none (every setting is transaction-local), so any other
    statement sees no tenant row at all. Failing to reach the database raises
    `DatabaseUnavailable`, like `tenant()`; the statement timeout is enforced from here.
    """
    timeout_s: float | None = None
    if isinstance(pool, Database):
        if pool.settings.statement_timeout_ms:
            timeout_s = pool.settings.statement_timeout_ms / 1000
        pool = pool.pool
    conn = await _acquire(pool)
    try:
        rows: list[Record] = await conn.fetch(sql, *args, timeout=timeout_s)
        return rows
    except UNREACHABLE_ERRORS as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except asyncpg.InternalClientError:
        conn.terminate()  # broken protocol state: never hand it to another caller
        raise
    finally:
        await _release(pool, conn)


# ---------------------------------------------------------------------------------------------
# Pools


async def _no_reset(conn: Connection) -> None:
    """Release without a round trip: the tenant context is transaction-local (see module doc).

    asyncpg still rolls back a transaction left open before calling this hook, so a connection
    never goes back to the pool mid-transaction.
    """


def _json_encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def _init_connection(conn: Connection) -> None:
    # json/jsonb columns travel as Python objects, encoded and decoded by msgspec.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_json_encode, decoder=msgspec.json.decode
        )


async def create_pool(url: str, *, min_size: int = 0, max_size: int = 10, **kwargs: Any) -> Pool:
    """A pool without reset-on-release and with msgspec JSON codecs.

    `min_size` connections are opened in the background, so a pool can be created while the
    database is down (requests then answer 503 until it is back).
    """
    pool = asyncpg.create_pool(
        url,
        min_size=0,
        max_size=max_size,
        reset=_no_reset,
        init=_init_connection,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"application_name": "vechat-rls"},
        **kwargs,
    )
    await pool
    if min_size:
        start_warm_up(pool, min_size)
    return pool


def start_warm_up(pool: Pool, count: int) -> None:
    """Open `count` connections of `pool` in the background (failures are ignored)."""
    task = asyncio.get_running_loop().create_task(_warm_up(pool, count))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def _warm_up(pool: Pool, count: int) -> None:
    with contextlib.suppress(Exception):
        conns = [await pool.acquire(timeout=CONNECT_TIMEOUT_S) for _ in range(count)]
        for conn in conns:
            await pool.release(conn)


class Database:
    """One database's pool plus the settings its transactions need.

    Registry mode gives each database the process's `budget`: its pool then opens connections
    through the budget and lets one go after `VECHAT_POOL_IDLE_S` unused.
    """

    def __init__(
        self, settings: Settings, url: str | None = None, *, budget: ConnectionBudget | None = None
    ) -> None:
        self.settings = settings
        self.url = url or settings.database_url
        self.budget = budget
        self._pool: Pool | None = None
        # The ringer's, set by the realtime engine in coalesced doorbell mode (realtime/ringer.py).
        self.ring: Ring | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("Database.open() has not been awaited")
        return self._pool

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def label(self) -> str:
        """host:port/database, for messages (never the password)."""
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"

    async def open(self, *, warm_up: bool = True) -> None:
        """Create the pool; `VECHAT_POOL_MIN` connections open in the background unless not
        `warm_up` (then `warm_up()` later)."""
        options: dict[str, Any] = {}
        if self.budget is not None:
            options = {
                "connect": self.budget.connect,
                "max_inactive_connection_lifetime": float(self.settings.pool_idle_s),
            }
        self._pool = await create_pool(
            self.url,
            min_size=self.settings.pool_min if warm_up else 0,
            max_size=self.settings.pool_max,
            **options,
        )

    def warm_up(self) -> None:
        if self.settings.pool_min:
            start_warm_up(self.pool, self.settings.pool_min)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)

    def tenant(
        self, identity: Identity, *, readonly: bool = False, appends_events: bool = True
    ) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """See `tenant()`; uses this database's statement timeout."""
        return tenant(self, identity, readonly=readonly, appends_events=appends_events)

    async def ping(self) -> None:
        """Raise `DatabaseUnavailable` unless a query round trip succeeds within 2 s."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except _PING_FAILURES as exc:
            raise DatabaseUnavailable(f"database {self.label} unreachable") from exc


# ---------------------------------------------------------------------------------------------
# The connection budget (registry mode)

BUDGET_POLL_S = 0.05
ABORT_GRACE_S = 0.1  # an aborted connection keeps its slot this long: its backend is exiting
CLOSED_UNSEEN_S = 5.0  # a connection closed without telling us leaves the count after this long


class ConnectionBudget:
    """At most `limit` connections open at once, whoever opens them: pools, listeners, ringers.

    Every connection of registry mode is opened by `connect` (asyncpg's `connect`, with the
    same arguments), which waits while the process is at its limit. Waiting, it first asks
    `evict` (set by the fleet) to close one idle connection somewhere — a pooled connection no
    request holds, a ringer's between rings — and tries again; when nothing can be closed it
    looks again every 50 ms, until `timeout`, then raises `ConnectionBudgetExhausted` (the API
    answers 503).

    A connection counts from the moment it is being opened until PostgreSQL has let it go: a
    graceful close returns once the server has closed the socket, which a backend keeps until it
    has exited (so `pg_stat_activity` never shows more than `limit`); a connection aborted from
    this side (asyncpg's own idle timeout, a broken one) keeps its slot `ABORT_GRACE_S` longer,
    the time its backend takes to notice and exit.
    """

    def __init__(self, limit: int, *, timeout: float = ACQUIRE_TIMEOUT_S) -> None:
        self.limit = limit
        self.timeout = timeout
        self.evict: Callable[[], Awaitable[bool]] = _nothing_to_evict
        self.opened = 0  # connections opened through the budget, ever (tests, metrics)
        self._live: set[asyncpg.Connection[Record]] = set()
        self._closed_unseen: dict[asyncpg.Connection[Record], float] = {}
        self._opening = 0
        self._freed: asyncio.Event | None = None

    def in_use(self) -> int:
        """Connections open, being opened, or closing, now."""
        now = time.monotonic()
        for conn in [c for c in self._live if c.is_closed()]:
            # Closed without its termination callback (asyncpg runs one on every close path it
            # knows of): a safety net, so that the count cannot leak.
            if now - self._closed_unseen.setdefault(conn, now) >= CLOSED_UNSEEN_S:
                self._free(conn)
        return len(self._live) + self._opening

    async def connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection[Record]:
        await self._take()
        try:
            conn: asyncpg.Connection[Record] = await asyncpg.connect(*args, **kwargs)
        finally:
            self._opening -= 1
        self._live.add(conn)
        self.opened += 1
        # The callback gets the pool's proxy while the connection is acquired: keep our own.
        conn.add_termination_listener(lambda _ref: self._closed(conn))
        return conn

    async def _take(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.in_use() >= self.limit:
            if await self.evict():
                await asyncio.sleep(0)  # let the closed connection's callback free its slot
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionBudgetExhausted(
                    f"all {self.limit} connections of VECHAT_POOL_TOTAL_MAX are in use"
                )
            if self._freed is None:
                self._freed = asyncio.Event()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, BUDGET_POLL_S)):
                    await self._freed.wait()
        self._opening += 1

    def _closed(self, conn: asyncpg.Connection[Record]) -> None:
        # asyncpg marks a connection it aborted (rather than closed with the server) `_aborted`;
        # unknown counts as aborted.
        if getattr(conn, "_aborted", True):
            asyncio.get_running_loop().call_later(ABORT_GRACE_S, self._free, conn)
        else:
            self._free(conn)

    def _free(self, conn: asyncpg.Connection[Record]) -> None:
        self._live.discard(conn)
        self._closed_unseen.pop(conn, None)
        if self._freed is not None:
            self._freed.set()


async def _nothing_to_evict() -> bool:
    return False


async def close_idle_connection(pool: Pool) -> bool:
    """Close one connection of `pool` that no one holds, gracefully; False when there is none.

    asyncpg has no public call for this; it is what the pool itself does to a connection idle
    for `max_inactive_connection_lifetime` (an idle `PoolConnectionHolder` closed), except that
    the close waits for the server: the holder stays in the pool and connects again when it is
    next acquired (a closing connection already counts as closed to it).
    """
    for holder in getattr(pool, "_holders", ()):
        if holder.is_connected() and holder.is_idle():
            # Inline, not `asyncio.wait_for` (a task started on the next turn of the loop, by
            # when a request may have taken the connection): the close marks the connection
            # closed before it first waits, so whoever acquires the holder next reconnects.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await holder.close()
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Role safety: the application's role must not be able to switch row-level security off.

_ROLE_SAFETY_SQL = """
SELECT r.rolname,
       r.rolsuper,
       r.rolbypassrls,
       ARRAY(SELECT m.rolname::text FROM pg_catalog.pg_roles m
             WHERE m.oid <> r.oid AND (m.rolsuper OR m.rolbypassrls)
               AND pg_catalog.pg_has_role(r.oid, m.oid, 'MEMBER')
             ORDER BY 1) AS privileged_roles,
       ARRAY(SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND ((n.nspname = 'public' AND c.relname LIKE 'vechat\\_%')
                    OR n.nspname IN ('vechat', 'vechat_audit'))
               AND pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')
             ORDER BY 1) AS owned_relations,
       ARRAY(SELECT n.nspname::text FROM pg_catalog.pg_namespace n
             WHERE n.nspname IN ('vechat', 'vechat_audit')
               AND pg_catalog.pg_has_role(r.oid, n.nspowner, 'MEMBER')
             ORDER BY 1) AS owned_schemas,
       ARRAY(SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname IN ('vechat', 'vechat_audit')
               AND pg_catalog.pg_has_role(r.oid, p.proowner, 'MEMBER')
             ORDER BY 1) AS owned_functions
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user
"""


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


async def role_safety_problems(conn: Connection) -> list[str]:
    """Why the connected role could bypass row-level security; empty when it cannot.

    Membership counts as ownership: a member of the owning role can `SET ROLE` to it and then
    `ALTER TABLE … NO FORCE ROW LEVEL SECURITY`.
    """
    row = await conn.fetchrow(_ROLE_SAFETY_SQL)
    assert row is not None
    role = row["rolname"]
    if row["rolsuper"]:
        return [f"role {role!r} is a superuser (row-level security never applies to it)"]
    problems = []
    if row["rolbypassrls"]:
        problems.append(f"role {role!r} has BYPASSRLS")
    if row["privileged_roles"]:
        problems.append(
            f"role {role!r} is a member of superuser/BYPASSRLS role(s) "
            f"{_some(row['privileged_roles'])}"
        )
    owned = row["owned_relations"] + [f"schema {s}" for s in row["owned_schemas"]]
    owned += [f"function {f}" for f in row["owned_functions"]]
    if owned:
        problems.append(
            f"role {role!r} owns (or is a member of the owner of) {_some(owned)}, "
            "and an owner can switch row-level security off"
        )
    return problems


async def check_role_safety(
    target: Pool | Database | str, *, allow_privileged: bool = False
) -> list[str]:
    """Raise `RoleSafetyError` naming the problems, unless `allow_privileged` (then log loudly).

    `target` is a pool, a `Database` or a URL (one short-lived connection). Returns the problems
    found, empty for a safe role; an unreachable database raises `DatabaseUnavailable`.
    """
    if isinstance(target, str):
        label = redact_url(target)
        connection: contextlib.AbstractAsyncContextManager[Connection] = _connect(target)
    else:
        label = target.label if isinstance(target, Database) else "the database"
        pool = target.pool if isinstance(target, Database) else target
        connection = pool.acquire(timeout=CONNECT_TIMEOUT_S)
    try:
        async with connection as conn:
            problems = await role_safety_problems(conn)
    except _CONNECT_FAILURES as exc:
        raise DatabaseUnavailable(f"cannot connect to {label}: {_reason(exc)}") from exc
    if problems and not allow_privileged:
        raise RoleSafetyError(
            "; ".join(problems) + " — connect as vechat_app (see VECHAT_DATABASE_URL)"
        )
    for problem in problems:
        log.warning(
            "UNSAFE (--allow-privileged-role): %s; tenant isolation is NOT enforced", problem
        )
    return problems


async def connect(
    url: str, *, budget: ConnectionBudget | None = None, **server_settings: str
) -> Connection:
    """A connection of its own, outside any pool (the ringer's); the caller closes it.

    With a `budget` (registry mode) it counts against the process's connection cap.
    """
    opener = budget.connect if budget is not None else asyncpg.connect
    conn: Connection = await opener(url, timeout=CONNECT_TIMEOUT_S, server_settings=server_settings)
    return conn


CONNECT_ERRORS = _CONNECT_FAILURES  # what `connect` raises when the database is not there


@contextlib.asynccontextmanager
async def _connect(url: str) -> AsyncIterator[Connection]:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        yield conn
    finally:
        await conn.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
