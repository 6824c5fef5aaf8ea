"""The shared fixtures (a pytest plugin, tests/conftest.py): one real PostgreSQL server per test
session (tests/support/postgres.py), its databases, and `cli` (the command line run in-process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.support.postgres import TestPostgres, provide_postgres
from vechat_rls import migrate
from vechat_rls.cli import main

APP_PASSWORD = "vechat_app"


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestPostgres]:
    with provide_postgres() as pg:
        yield pg


@dataclass(frozen=True)
class Database:
    """A database on the session server: its name, the DBA's URL and vechat_app's URL."""

    name: str
    admin_url: str
    app_url: str


def migrate_to_head(admin_url: str) -> None:
    """Migrate with the runner to the newest migration; let vechat_app log in with a password."""
    target = migrate.target_for_url(admin_url)
    migrate.migrate(target, migrate.load_layout(), say=lambda _line: None)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # Roles are cluster-wide: every migrated database of the session shares this one.
        conn.execute(f"ALTER ROLE vechat_app LOGIN PASSWORD '{APP_PASSWORD}'")


@pytest.fixture(scope="session")
def migrated_database(postgres: TestPostgres) -> Iterator[Database]:
    """One database migrated to head for the whole session. Tests must leave it as they found it."""
    name = postgres.create_database("migrated")
    migrate_to_head(postgres.admin_url(name))
    yield Database(name, postgres.admin_url(name), postgres.app_url(name, password=APP_PASSWORD))
    postgres.drop_database(name)


FreshDatabase = Callable[..., Database]


@pytest.fixture
def fresh_database(postgres: TestPostgres) -> Iterator[FreshDatabase]:
    """A factory of empty (or, with `migrated=True`, migrated) databases, dropped after the test."""
    created: list[str] = []

    def make(*, migrated: bool = False, prefix: str = "fresh") -> Database:
        name = postgres.create_database(prefix)
        created.append(name)
        if migrated:
            migrate_to_head(postgres.admin_url(name))
        app_url = postgres.app_url(name, password=APP_PASSWORD)
        return Database(name, postgres.admin_url(name), app_url)

    yield make
    for name in created:
        postgres.drop_database(name)


@dataclass
class CliResult:
    """What one `vechat-rls …` run in this process printed, and its exit code."""

    code: int
    out: str
    err: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `vechat-rls …` in this process; exit code, stdout, stderr."""

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
