"""What a handler may ask for: the caller's identity, their database, the request's tenant
transaction, the settings. The parameter *name* selects the dependency (Litestar's named DI):
`identity: IdentityDep`, `conn: ConnDep`, `database: DatabaseDep`, `settings: SettingsDep`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency

from vechat_rls import db
from vechat_rls.auth import AuthError
from vechat_rls.config import Settings
from vechat_rls.fleet import Fleet
from vechat_rls.identity import Identity

IdentityDep: TypeAlias = NamedDependency[Identity]
ConnDep: TypeAlias = NamedDependency[db.Transaction]
DatabaseDep: TypeAlias = NamedDependency[db.Database]
SettingsDep: TypeAlias = NamedDependency[Settings]

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def provide_identity(request: ASGIConnection[Any, Any, Any, Any]) -> Identity:
    """Dependency `identity`: the guard has already verified the token."""
    identity = request.scope.get("user")
    if not isinstance(identity, Identity):
        raise AuthError("missing bearer token", error="")
    return identity


async def provide_database(request: ASGIConnection[Any, Any, Any, Any]) -> db.Database:
    """Dependency `database`: for handlers that open their own tenant transactions."""
    database: db.Database = request.app.state.database
    return database


async def provide_fleet_database(
    request: ASGIConnection[Any, Any, Any, Any], identity: IdentityDep
) -> AsyncIterator[db.Database]:
    """Dependency `database` in registry mode: the caller's organisation's database.

    The organisation is the verified token's (fleet.py routes it); the database is held open
    until the request is done.
    """
    fleet: Fleet = request.app.state.fleet
    async with fleet.lease(identity.organisation_id) as database:
        yield database


async def provide_conn(
    request: ASGIConnection[Any, Any, Any, Any], identity: IdentityDep, database: DatabaseDep
) -> AsyncIterator[db.Transaction]:
    """Dependency `conn`: the request's tenant transaction (READ ONLY for GET/HEAD).

    Litestar builds the response before this generator resumes, so the commit happens before a
    single byte is sent and a failed commit still becomes an error response.
    """
    readonly = request.scope.get("method") in READ_ONLY_METHODS
    async with database.tenant(identity, readonly=readonly) as conn:
        yield conn
