"""The runner's file handling and URL masking, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from vechat_rls import migrate

REPO_DB = Path(__file__).resolve().parents[1] / "db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql://postgres:pw@127.0.0.1:5432/db",
            "postgresql://postgres:***@127.0.0.1:5432/db",
        ),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgres://u@h/db?password=pw&x=1", "postgres://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("host=h dbname=db password=pw user=u", "host=h dbname=db password=*** user=u"),
        ("host=h password = 'p w' user=u", "host=h password = *** user=u"),
    ],
)
def test_mask_url_hides_every_password(url: str, masked: str) -> None:
    assert migrate.mask_url(url) == masked


def test_migration_files_must_come_in_pairs(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_a.up.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"needs an \.up\.sql and a \.down\.sql"):
        migrate.load_layout(tmp_path)


def test_repository_layout_loads() -> None:
    layout = migrate.load_layout(REPO_DB)
    assert layout.roles is not None and layout.roles.name == "00_roles.sql"
    assert layout.migrations[0].label == "0001_foundation"
    assert "00_roles.sql" not in [p.name for p in layout.policies]
