"""Which databases to act on, as their DBA: one URL, or every entry of the registry."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from vechat_rls import registry
from vechat_rls.migrate.errors import TargetError

ADMIN_URL_ENV = "VECHAT_ADMIN_DATABASE_URL"
REGISTRY_ENV = registry.ENV


@dataclass(frozen=True)
class Target:
    """One database to act on, as its DBA."""

    name: str
    admin_url: str
    legacy_organisation_id: int | None = None
    legacy_timezone: str | None = None


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL (or key=value conninfo) with any password replaced by `***`."""
    if "://" not in url:
        return _PASSWORD_KV.sub(r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        auth, _, hosts = netloc.rpartition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        netloc = f"{auth}@{hosts}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query, flags=re.IGNORECASE)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def password_of(url: str) -> str | None:
    if "://" not in url:
        match = _PASSWORD_KV.search(url)
        return match[2].strip("'") if match else None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _database_name(url: str) -> str:
    if "://" in url:
        path = urlsplit(url).path.lstrip("/")
        return unquote(path) or "database"
    match = re.search(r"dbname\s*=\s*(\S+)", url)
    return match[1].strip("'") if match else "database"


def target_for_url(
    url: str, *, legacy_organisation_id: int | None = None, legacy_timezone: str | None = None
) -> Target:
    return Target(_database_name(url), url, legacy_organisation_id, legacy_timezone)


def load_registry(path: Path) -> list[Target]:
    """The `[[databases]]` of a registry file (vechat_rls.registry), as targets of the DBA."""
    try:
        entries = registry.load(path).entries
        return [
            Target(e.name, e.require_admin_url(), e.legacy_owner, e.legacy_timezone)
            for e in entries
        ]
    except registry.RegistryError as exc:
        raise TargetError(str(exc)) from None


def targets_for(
    database_url: str | None,
    *,
    every_database: bool = False,
    legacy_organisation_id: int | None = None,
    legacy_timezone: str | None = None,
) -> list[Target]:
    """`database_url`, every database of the registry (`$VECHAT_REGISTRY`), or
    `$VECHAT_ADMIN_DATABASE_URL`; `TargetError` when none can be named.

    With the registry, a database's own legacy owner (`legacy_organisation_id`, else its only
    organisation) and `legacy_timezone` win over the values given here, which are only the
    default for entries that have none.
    """
    if legacy_organisation_id is not None and legacy_organisation_id <= 0:
        raise TargetError(
            f"--legacy-organisation-id must be an integer > 0, not {legacy_organisation_id}"
        )
    if every_database:
        path = os.environ.get(REGISTRY_ENV)
        if not path:
            raise TargetError(f"--all needs ${REGISTRY_ENV} (a TOML file of [[databases]])")
        return [
            Target(
                t.name,
                t.admin_url,
                t.legacy_organisation_id or legacy_organisation_id,
                t.legacy_timezone or legacy_timezone,
            )
            for t in load_registry(Path(path))
        ]
    url = database_url or os.environ.get(ADMIN_URL_ENV)
    if not url:
        raise TargetError(f"no database: give --database-url, --all, or set ${ADMIN_URL_ENV}")
    return [
        target_for_url(
            url, legacy_organisation_id=legacy_organisation_id, legacy_timezone=legacy_timezone
        )
    ]
