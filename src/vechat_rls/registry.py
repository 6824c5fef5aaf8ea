"""The registry: which organisation database holds which organisations (`VECHAT_REGISTRY`, TOML).

One `[[databases]]` table per database:

    [[databases]]
    name = "velosi"                                      # a label for reports, unique
    url = "postgresql://vechat_app@db1:5432/velosi"      # what `serve` connects as (vechat_app)
    admin_url = "postgresql://postgres@db1:5432/velosi"  # what `db …` and `audit` connect as
    organisations = [1]                # ["*"]: every organisation no other entry lists
    legacy_organisation_id = 1         # owner of the legacy VeChat rows found in this database
    legacy_timezone = "UTC"            # how to read the legacy tables' naive timestamps

The file is checked as a whole when it is read (types, unknown keys, a name or an organisation
used twice, two `"*"` entries); what only one use needs (`url` for serve, `admin_url` for the
DBA's commands) is checked by that use. Nothing here connects anywhere.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "VECHAT_REGISTRY"
SHARED = "*"
_KEYS = frozenset(
    {"name", "url", "admin_url", "organisations", "legacy_organisation_id", "legacy_timezone"}
)


class RegistryError(ValueError):
    """The registry cannot be used; the message is one line naming the file and the entry."""


@dataclass(frozen=True)
class Entry:
    """One database of the registry."""

    where: str  # "registry PATH: databases[i] (name)", the prefix of every message about it
    name: str
    url: str | None
    admin_url: str | None
    organisations: tuple[int, ...]  # listed explicitly
    shared: bool  # organisations includes "*": every organisation not listed elsewhere
    legacy_organisation_id: int | None
    legacy_timezone: str | None

    @property
    def legacy_owner(self) -> int | None:
        """Who owns this database's legacy rows: `legacy_organisation_id`, else its only
        organisation when it lists exactly one (and is not the shared database), else unknown."""
        if self.legacy_organisation_id is not None:
            return self.legacy_organisation_id
        if len(self.organisations) == 1 and not self.shared:
            return self.organisations[0]
        return None

    def require_admin_url(self) -> str:
        if not self.admin_url:
            raise RegistryError(f"{self.where}: admin_url missing")
        return self.admin_url

    def require_url(self) -> str:
        if not self.url:
            raise RegistryError(f"{self.where}: url missing")
        return self.url


@dataclass(frozen=True)
class Registry:
    """Every database of the file, in file order."""

    path: Path
    entries: tuple[Entry, ...]

    def database_for(self, organisation_id: int) -> Entry | None:
        """The entry that lists `organisation_id`, else the shared one, else None."""
        shared = None
        for entry in self.entries:
            if organisation_id in entry.organisations:
                return entry
            if entry.shared:
                shared = entry
        return shared

    def require_serving(self) -> None:
        """What `serve` needs of every entry: a `url` and at least one organisation."""
        for entry in self.entries:
            entry.require_url()
            if not entry.organisations and not entry.shared:
                raise RegistryError(f'{entry.where}: organisations missing (a list, or ["*"])')


def load(path: Path | str) -> Registry:
    """Read and check the registry file; `RegistryError` (one line) if it cannot be used."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror or exc}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Registry:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"registry {path}: {exc}") from None
    unknown = sorted(set(data) - {"databases"})
    if unknown:
        raise RegistryError(f"registry {path}: unknown key {unknown[0]!r} (expected [[databases]])")
    raw_entries = data.get("databases")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise RegistryError(f"registry {path}: no [[databases]] entries")
    entries: list[Entry] = []
    placed: dict[int, str] = {}
    shared_by: str | None = None
    for index, raw in enumerate(raw_entries):
        entry = _entry(raw, f"registry {path}: databases[{index}]")
        if any(e.name == entry.name for e in entries):
            raise RegistryError(
                f"registry {path}: databases[{index}]: name {entry.name!r} used twice"
            )
        for organisation in entry.organisations:
            if organisation in placed:
                other = placed[organisation]
                raise RegistryError(
                    f"{entry.where}: organisation {organisation} is also in {other!r}"
                )
            placed[organisation] = entry.name
        if entry.shared:
            if shared_by is not None:
                raise RegistryError(
                    f'{entry.where}: organisations ["*"] is also in {shared_by!r} '
                    "(one shared database at most)"
                )
            shared_by = entry.name
        entries.append(entry)
    return Registry(path, tuple(entries))


def _entry(raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: not a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{where}: name missing")
    where = f"{where} ({name})"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise RegistryError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    url, admin_url = raw.get("url"), raw.get("admin_url")
    for key, value in (("url", url), ("admin_url", admin_url)):
        if value is not None and (not isinstance(value, str) or not value):
            raise RegistryError(f"{where}: {key} must be a non-empty string")
    organisations: list[int] = []
    shared = False
    listed = raw.get("organisations", [])
    if not isinstance(listed, list):
        raise RegistryError(f'{where}: organisations must be a list of ids > 0, or ["*"]')
    for item in listed:
        if item == SHARED:
            shared = True
        elif _positive_int(item):
            if item in organisations:
                raise RegistryError(f"{where}: organisation {item} listed twice")
            organisations.append(item)
        else:
            raise RegistryError(
                f'{where}: organisations must be a list of ids > 0, or ["*"] (got {item!r})'
            )
    legacy = raw.get("legacy_organisation_id")
    if legacy is not None:
        if not _positive_int(legacy):
            raise RegistryError(f"{where}: legacy_organisation_id must be an integer > 0")
        if organisations and not shared and legacy not in organisations:
            raise RegistryError(
                f"{where}: legacy_organisation_id {legacy} is not one of its organisations "
                f"{organisations}"
            )
    timezone = raw.get("legacy_timezone")
    if timezone is not None and (not isinstance(timezone, str) or not timezone):
        raise RegistryError(f"{where}: legacy_timezone must be a string")
    return Entry(where, name, url, admin_url, tuple(organisations), shared, legacy, timezone)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
