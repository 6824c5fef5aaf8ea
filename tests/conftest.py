"""Shared fixtures: one real PostgreSQL server per test session (see tests/pg.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import TestPostgres, provide_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestPostgres]:
    with provide_postgres() as pg:
        yield pg
