"""The runner's file handling and URL masking, without a database."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vechat_rls import migrate
from vechat_rls.cli import CliError
from vechat_rls.cli.db import targets_from_args

REPO_DB = Path(__file__).resolve().parents[2] / "db"


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


def _args(**values: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "database_url": None,
        "all": False,
        "legacy_organisation_id": None,
        "legacy_timezone": None,
    }
    return argparse.Namespace(**(defaults | values))


def test_registry_targets_keep_their_own_legacy_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text("""
[[databases]]
name = "velosi"
url = "postgresql://vechat_app@db1/velosi"
admin_url = "postgresql://postgres@db1/velosi"
organisations = [1]
legacy_organisation_id = 1

[[databases]]
name = "shared"
url = "postgresql://vechat_app@db2/shared"
admin_url = "postgresql://postgres@db2/shared"
organisations = ["*"]
""")
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))
    targets = targets_from_args(
        _args(all=True, legacy_organisation_id=9, legacy_timezone="Africa/Tunis")
    )
    assert targets == [
        migrate.Target("velosi", "postgresql://postgres@db1/velosi", 1, "Africa/Tunis"),
        migrate.Target("shared", "postgresql://postgres@db2/shared", 9, "Africa/Tunis"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[databases]] entries"),
        ("[[databases]]\nname = 'a'\n", "databases[0] (a): admin_url missing"),
        ("[[databases]]\nadmin_url = 'postgresql://x/y'\n", "databases[0]: name missing"),
        (
            "[[databases]]\nname = 'a'\nadmin_url = 'u'\n"
            "[[databases]]\nname = 'a'\nadmin_url = 'v'\n",
            "databases[1]: name 'a' used twice",
        ),
        ("[[databases]\n", "registry"),
    ],
)
def test_bad_registry_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(text)
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))
    with pytest.raises(CliError) as caught:
        targets_from_args(_args(all=True))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_default_target_is_named_after_its_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(migrate.ADMIN_URL_ENV, "postgresql://postgres:pw@h:5432/velosi")
    [target] = targets_from_args(_args(legacy_organisation_id=4))
    assert (target.name, target.legacy_organisation_id) == ("velosi", 4)


def test_a_legacy_organisation_id_below_one_is_a_usage_error() -> None:
    with pytest.raises(CliError) as caught:
        targets_from_args(_args(database_url="postgresql://x/y", legacy_organisation_id=0))
    assert caught.value.exit_code == 2
    assert str(caught.value) == "--legacy-organisation-id must be an integer > 0, not 0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[databases]]\nname = 'a'\nadmin_url = 'u'\norganisations = [1]\n"
            "[[databases]]\nname = 'b'\nadmin_url = 'v'\norganisations = [2, 1]\n",
            "databases[1] (b): organisation 1 is also in 'a'",
        ),
        (
            "[[databases]]\nname = 'a'\nadmin_url = 'u'\norganisations = ['*']\n"
            "[[databases]]\nname = 'b'\nadmin_url = 'v'\norganisations = ['*']\n",
            "databases[1] (b): organisations [\"*\"] is also in 'a'",
        ),
        (
            "[[databases]]\nname = 'a'\nadmin-url = 'u'\n",
            "databases[0] (a): unknown key 'admin-url'",
        ),
        (
            "[[databases]]\nname = 'a'\nadmin_url = 'u'\norganisations = [0]\n",
            "databases[0] (a): organisations must be a list of ids > 0",
        ),
        (
            "[[databases]]\nname = 'a'\nadmin_url = 'u'\norganisations = [1]\n"
            "legacy_organisation_id = 2\n",
            "databases[0] (a): legacy_organisation_id 2 is not one of its organisations [1]",
        ),
    ],
)
def test_registry_inconsistencies_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(text)
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))
    with pytest.raises(CliError) as caught:
        targets_from_args(_args(all=True))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_database_of_one_organisation_owns_its_legacy_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(
        "[[databases]]\nname = 'org2'\nadmin_url = 'postgresql://h/org2'\norganisations = [2]\n"
        "[[databases]]\nname = 'shared'\nadmin_url = 'postgresql://h/s'\norganisations = ['*']\n"
        "[[databases]]\nname = 'pair'\nadmin_url = 'postgresql://h/p'\norganisations = [3, 4]\n"
    )
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))
    targets = targets_from_args(_args(all=True, legacy_organisation_id=9))
    assert [(t.name, t.legacy_organisation_id) for t in targets] == [
        ("org2", 2), ("shared", 9), ("pair", 9)
    ]
