"""Role safety: the application's role must not be able to switch row-level security off."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from vechat_rls.config import redact_url
from vechat_rls.db.driver import (
    CONNECT_FAILURES,
    CONNECT_TIMEOUT_S,
    Connection,
    DatabaseUnavailable,
    Pool,
    RoleSafetyError,
)
from vechat_rls.db.pools import Database

log = logging.getLogger(__name__)

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
    except CONNECT_FAILURES as exc:
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
