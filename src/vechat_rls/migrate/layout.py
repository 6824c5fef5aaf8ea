"""What is on disk: the migrations and the two repeatable tiers of one `db/` directory."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vechat_rls.migrate.errors import MigrationError

DB_DIR_ENV = "VECHAT_DB_DIR"
ROLES_FILE = "00_roles.sql"

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.(up|down|verify)\.sql$")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Migration:
    """One `NNNN_name` migration: its up, down and optional verify files."""

    version: int
    name: str
    up: Path
    down: Path
    verify: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return sha256_file(self.up)


@dataclass(frozen=True)
class PolicyFile:
    """One idempotent file of `db/functions/` or `db/policies/`, re-applied when it changes."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return sha256_file(self.path)


@dataclass(frozen=True)
class Layout:
    """The migrations and policy files of one `db/` directory."""

    migrations: tuple[Migration, ...]
    policies: tuple[PolicyFile, ...]  # without the roles file, in file-name order
    roles: Path | None
    functions: tuple[PolicyFile, ...] = ()  # db/functions, in file-name order

    @property
    def head(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self.migrations}


def default_db_dir() -> Path:
    """`db/` of the source tree, or `$VECHAT_DB_DIR`."""
    override = os.environ.get(DB_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "db"


def load_layout(
    db_dir: Path | None = None,
    *,
    migrations_dir: Path | None = None,
    policies_dir: Path | None = None,
    functions_dir: Path | None = None,
) -> Layout:
    """Read `migrations/`, `functions/` and `policies/` under `db_dir` (each overridable)."""
    base = db_dir or default_db_dir()
    migrations_dir = migrations_dir or base / "migrations"
    policies_dir = policies_dir or base / "policies"
    functions_dir = functions_dir or base / "functions"
    if not migrations_dir.is_dir():
        raise MigrationError(f"no migrations directory at {migrations_dir}")
    files: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(
                f"{path}: not a migration file name (NNNN_name.up|down|verify.sql)"
            )
        version, name, kind = int(match[1]), match[2], match[3]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"{migrations_dir}: two migrations numbered {version:04d}")
        files.setdefault(version, {})[kind] = path
    migrations = []
    for version in sorted(files):
        parts = files[version]
        label = f"{version:04d}_{names[version]}"
        if version == 0:
            raise MigrationError(f"{label}: migration numbers start at 0001")
        if "up" not in parts or "down" not in parts:
            raise MigrationError(f"{label}: every migration needs an .up.sql and a .down.sql")
        migrations.append(
            Migration(version, names[version], parts["up"], parts["down"], parts.get("verify"))
        )
    roles: Path | None = None
    policies: list[PolicyFile] = []
    if policies_dir.is_dir():
        for path in sorted(policies_dir.glob("*.sql")):
            if path.name == ROLES_FILE:
                roles = path
            else:
                policies.append(PolicyFile(path))
    functions: list[PolicyFile] = []
    if functions_dir.is_dir():
        functions = [PolicyFile(path) for path in sorted(functions_dir.glob("*.sql"))]
    return Layout(tuple(migrations), tuple(policies), roles, tuple(functions))
