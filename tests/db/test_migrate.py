"""The migration runner (vechat-rls db …) on real databases: ledger, lock, policies, drift."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.catalog import Snapshot, differences, snapshot
from tests.support.fixtures import Cli, Database, FreshDatabase
from vechat_rls import migrate
from vechat_rls.pgserver import free_port

REPO_DB = Path(__file__).resolve().parents[2] / "db"

# A tiny schema of our own, so that the runner's behaviour is tested independently of 0001.
TINY_MIGRATIONS = {
    "0001_things.up.sql": """
CREATE SCHEMA IF NOT EXISTS vechat;
CREATE TABLE public.vechat_things (
    organisation_id bigint NOT NULL,
    id bigint NOT NULL,
    PRIMARY KEY (organisation_id, id)
);
""",
    "0001_things.down.sql": "DROP TABLE public.vechat_things;\n",
    "0001_things.verify.sql": """
DO $$ BEGIN
    IF to_regclass('public.vechat_things') IS NULL THEN
        RAISE EXCEPTION 'vechat_things missing';
    END IF;
END $$;
""",
    "0002_note.up.sql": "ALTER TABLE public.vechat_things ADD COLUMN note text;\n",
    "0002_note.down.sql": "ALTER TABLE public.vechat_things DROP COLUMN note;\n",
}
TINY_POLICY = """
ALTER TABLE public.vechat_things ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_things FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS vechat_things_organisation_isolation ON public.vechat_things;
CREATE POLICY vechat_things_organisation_isolation ON public.vechat_things AS RESTRICTIVE
    USING (organisation_id = nullif(current_setting('vechat.organisation_id', true), '')::bigint);
"""

pytestmark = pytest.mark.db


@dataclass
class Tiny:
    """A db/ directory of tiny migrations and policies, and a database to run them on."""

    dir: Path
    database: Database

    def write(self, relative: str, text: str) -> None:
        (self.dir / relative).write_text(text)

    def layout(self) -> migrate.Layout:
        return migrate.load_layout(self.dir)


@pytest.fixture
def tiny(tmp_path: Path, fresh_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    db_dir = tmp_path / "db"
    (db_dir / "migrations").mkdir(parents=True)
    (db_dir / "policies").mkdir()
    for name, text in TINY_MIGRATIONS.items():
        (db_dir / "migrations" / name).write_text(text)
    (db_dir / "policies" / "vechat_things.sql").write_text(TINY_POLICY)
    (db_dir / "policies" / "00_roles.sql").write_text(
        (REPO_DB / "policies/00_roles.sql").read_text()
    )
    monkeypatch.setenv(migrate.DB_DIR_ENV, str(db_dir))
    return Tiny(db_dir, fresh_database(prefix="tiny"))


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query.encode(), params).fetchall()


def execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements.encode())


def ledger(url: str) -> list[tuple[Any, ...]]:
    if not rows(url, "SELECT to_regclass('vechat.schema_migrations')")[0][0]:
        return []
    return rows(
        url,
        "SELECT version, name, checksum, applied_at FROM vechat.schema_migrations ORDER BY version",
    )


def policy_ledger(url: str) -> list[tuple[Any, ...]]:
    if not rows(url, "SELECT to_regclass('vechat.schema_policy_files')")[0][0]:
        return []
    return rows(
        url,
        "SELECT file_name, checksum, applied_at FROM vechat.schema_policy_files ORDER BY file_name",
    )


def state(url: str) -> tuple[Snapshot, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Catalog, migration ledger and policy ledger: "nothing changed" means all three are equal."""
    return snapshot(url), ledger(url), policy_ledger(url)


def quiet(_line: str) -> None:
    pass


# --- the real migrations -------------------------------------------------------------------------


def without_vechat_schema_row(snap: Snapshot) -> Snapshot:
    """Schema vechat outlives a full rollback (it holds the ledger), with its grants and comment."""
    return {**snap, "schemas": [row for row in snap["schemas"] if row[0] != "vechat"]}


def test_up_down_up_round_trips_on_an_empty_database(fresh_database: FreshDatabase) -> None:
    db = fresh_database()
    target, layout = migrate.target_for_url(db.admin_url), migrate.load_layout(REPO_DB)
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        migrate.bootstrap(conn, layout, target)  # roles and ledger: what a full rollback keeps
    empty = snapshot(db.admin_url)

    migrate.migrate(target, layout, quiet)
    up = snapshot(db.admin_url)
    migrate.rollback(target, layout, quiet, to=0)
    down = snapshot(db.admin_url)
    migrate.migrate(target, layout, quiet)
    again = snapshot(db.admin_url)

    assert up["relations"], "0001 created nothing?"
    assert differences(without_vechat_schema_row(empty), without_vechat_schema_row(down)) == []
    assert differences(up, again) == []
    assert [r[:2] for r in ledger(db.admin_url)] == [(m.version, m.name) for m in layout.migrations]


def test_migrations_and_schema_files_build_the_same_catalog(fresh_database: FreshDatabase) -> None:
    by_migrations = fresh_database(migrated=True)
    by_files = fresh_database()
    layout = migrate.load_layout(REPO_DB)
    target = migrate.target_for_url(by_files.admin_url)
    files = (
        sorted((REPO_DB / "schema").glob("*.sql"))
        + [f.path for f in layout.functions]
        + [p.path for p in layout.policies]
    )
    with psycopg.connect(by_files.admin_url, autocommit=True) as conn:
        migrate.bootstrap(conn, layout, target)
        with conn.transaction():
            migrate.act_as_owner(conn, target)
            for path in files:
                conn.execute(path.read_bytes())

    assert differences(snapshot(by_migrations.admin_url), snapshot(by_files.admin_url)) == []


def test_every_vechat_object_but_the_ledger_is_owned_by_vechat_owner(
    migrated_database: Database,
) -> None:
    others = rows(
        migrated_database.admin_url,
        "SELECT object, owner FROM vechat_audit.objects WHERE owner <> 'vechat_owner' ORDER BY 1",
    )
    assert others == [
        ("table vechat.schema_function_files", "postgres"),  # the DBA's bookkeeping
        ("table vechat.schema_migrations", "postgres"),
        ("table vechat.schema_policy_files", "postgres"),
    ]


def test_app_role_has_no_privilege_on_the_ledger(migrated_database: Database) -> None:
    assert rows(
        migrated_database.admin_url,
        """
        SELECT t, has_table_privilege('vechat_app', t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
        FROM unnest(ARRAY['vechat.schema_migrations', 'vechat.schema_policy_files']) AS t
    """,
    ) == [("vechat.schema_migrations", False), ("vechat.schema_policy_files", False)]
    assert rows(
        migrated_database.admin_url,
        "SELECT has_schema_privilege('vechat_app', 'vechat_audit', 'USAGE')",
    ) == [(False,)]


def test_second_migrate_is_a_no_op(migrated_database: Database, cli: Cli) -> None:
    before = state(migrated_database.admin_url)
    result = cli("db", "migrate", "--database-url", migrated_database.admin_url)
    assert (result.code, result.err) == (0, "")
    assert "nothing to do" in result.out
    assert state(migrated_database.admin_url) == before


def test_verify_passes_on_a_migrated_database(migrated_database: Database, cli: Cli) -> None:
    result = cli("db", "verify", "--database-url", migrated_database.admin_url)
    assert result.code == 0, result.out + result.err
    assert "organisation_id in the four original tables: 4 rows (expected 4)" in result.out
    assert "FAIL" not in result.out
    for table in migrate.ORIGINAL_TABLES:
        assert f"{table}.organisation_id  bigint  NOT NULL" in result.out
        assert f"{table}: " in result.out  # its row counts


def test_verify_fails_on_a_database_that_is_not_migrated(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = fresh_database()
    result = cli("db", "verify", "--database-url", db.admin_url)
    assert result.code == 1
    assert "FAIL  organisation_id in the four original tables: 0 rows (expected 4)" in result.out
    assert "FAIL  migrations: at 0000" in result.out


def test_verify_fails_when_a_table_is_not_forced(fresh_database: FreshDatabase, cli: Cli) -> None:
    db = fresh_database(migrated=True)
    execute(db.admin_url, "ALTER TABLE public.vechat_presence NO FORCE ROW LEVEL SECURITY")
    result = cli("db", "verify", "--database-url", db.admin_url)
    assert result.code == 1
    assert "vechat_presence: enabled, NOT forced" in result.out


def test_all_migrates_every_registry_database_and_reports_each(
    fresh_database: FreshDatabase, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = fresh_database(), fresh_database()
    broken = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/gone"
    registry = tmp_path / "registry.toml"
    registry.write_text(f"""
[[databases]]
name = "one"
url = "{one.app_url}"
admin_url = "{one.admin_url}"
organisations = [1]

[[databases]]
name = "broken"
url = "{broken}"
admin_url = "{broken}"
organisations = [2]

[[databases]]
name = "two"
url = "{two.app_url}"
admin_url = "{two.admin_url}"
organisations = ["*"]
legacy_organisation_id = 3
""")
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))

    result = cli("db", "migrate", "--all")

    assert result.code == 3
    assert "[one] " in result.out and "[two] " in result.out
    assert "2 of 3 databases ok; could not be done: broken" in result.out
    assert result.err.startswith("vechat-rls: broken: cannot connect to postgresql://postgres:***@")
    assert "s3cret" not in result.out + result.err
    head = migrate.load_layout(REPO_DB).head
    assert ledger(one.admin_url)[-1][0] == head
    assert ledger(two.admin_url)[-1][0] == head


def test_all_without_a_registry_is_a_one_line_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(migrate.REGISTRY_ENV, raising=False)
    result = cli("db", "status", "--all")
    assert result.code == 2
    assert result.err.count("\n") == 1 and migrate.REGISTRY_ENV in result.err


def test_missing_database_url_is_a_one_line_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(migrate.ADMIN_URL_ENV, raising=False)
    result = cli("db", "migrate")
    assert result.code == 2
    assert result.err == (
        "vechat-rls: no database: give --database-url, --all, or set $VECHAT_ADMIN_DATABASE_URL\n"
    )


def test_admin_url_comes_from_the_environment(
    migrated_database: Database, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(migrate.ADMIN_URL_ENV, migrated_database.admin_url)
    result = cli("db", "status")
    assert result.code == 0
    assert "applied  0001_foundation" in result.out


# --- the runner's rules, on tiny migrations ------------------------------------------------------


def test_migrate_applies_each_migration_as_vechat_owner_and_records_it(
    tiny: Tiny, cli: Cli
) -> None:
    url = tiny.database.admin_url
    result = cli("db", "migrate", "--database-url", url)
    assert result.code == 0, result.err
    assert "applied 0001_things" in result.out and "applied 0002_note" in result.out
    assert "applied policies: vechat_things.sql" in result.out
    layout = tiny.layout()
    assert [(v, n, c) for v, n, c, _at in ledger(url)] == [
        (m.version, m.name, m.checksum) for m in layout.migrations
    ]
    assert [(f, c) for f, c, _at in policy_ledger(url)] == [
        ("vechat_things.sql", layout.policies[0].checksum)
    ]
    assert rows(
        url,
        """
        SELECT pg_get_userbyid(relowner), relrowsecurity, relforcerowsecurity
        FROM pg_class WHERE oid = 'public.vechat_things'::regclass
    """,
    ) == [("vechat_owner", True, True)]
    assert rows(url, "SELECT DISTINCT applied_by FROM vechat.schema_migrations") == [("postgres",)]


def test_edited_applied_migration_is_an_error_and_changes_nothing(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    assert cli("db", "migrate", "--database-url", url).code == 0
    tiny.write("migrations/0001_things.up.sql", TINY_MIGRATIONS["0001_things.up.sql"] + "-- edit\n")
    tiny.write("migrations/0003_more.up.sql", "CREATE TABLE public.vechat_more (id int);\n")
    tiny.write("migrations/0003_more.down.sql", "DROP TABLE public.vechat_more;\n")
    tiny.write("policies/vechat_things.sql", TINY_POLICY + "-- changed\n")
    before = state(url)

    result = cli("db", "migrate", "--database-url", url)

    assert result.code == 3
    assert result.err.count("\n") == 1
    assert "migration 0001_things was applied with checksum" in result.err
    assert "never edit an applied migration" in result.err
    assert state(url) == before
    status = cli("db", "status", "--database-url", url)
    assert status.code == 1
    assert "CHANGED  0001_things" in status.out and "pending  0003_more" in status.out


def test_second_runner_on_the_same_database_gets_a_one_line_error(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    tiny.write(
        "migrations/0001_things.up.sql",
        TINY_MIGRATIONS["0001_things.up.sql"] + "SELECT pg_sleep(1);\n",
    )
    first: list[BaseException] = []

    def run_first() -> None:
        try:
            migrate.migrate(migrate.target_for_url(url), tiny.layout(), quiet)
        except BaseException as exc:  # reported by the assertion below
            first.append(exc)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not rows(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )[0][0]:
            assert time.monotonic() < deadline, "the first runner never took its lock"
            time.sleep(0.02)
        second = cli("db", "migrate", "--database-url", url)
    finally:
        thread.join()

    assert first == []
    assert second.code == 3
    assert second.err == (f"vechat-rls: another migration is running on {migrate.mask_url(url)}\n")
    assert [v for v, *_ in ledger(url)] == [1, 2]  # the first runner finished its work


def test_runner_lock_does_not_block_other_databases(
    tiny: Tiny, fresh_database: FreshDatabase, cli: Cli
) -> None:
    other = fresh_database(prefix="tiny")
    with psycopg.connect(tiny.database.admin_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.LOCK_KEY,))
        assert cli("db", "migrate", "--database-url", tiny.database.admin_url).code == 3
        assert cli("db", "migrate", "--database-url", other.admin_url).code == 0


def test_unreachable_database_gives_one_line_without_traceback_or_password(tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "vechat_rls.cli", "db", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(
        "vechat-rls: cannot connect to postgresql://postgres:***@127.0.0.1:"
    )
    assert "Traceback" not in proc.stderr
    assert "s3cret-pw" not in proc.stderr


def test_wrong_password_is_one_line_without_the_password(
    migrated_database: Database, cli: Cli
) -> None:
    url = migrated_database.admin_url.replace("postgres:", "postgres:Wr0ng-pw-", 1)
    for command in (["db", "migrate"], ["db", "status"], ["db", "verify"], ["audit"]):
        result = cli(*command, "--database-url", url)
        assert result.code == 3
        assert result.err.count("\n") == 1 and "password authentication failed" in result.err
        assert "Wr0ng-pw" not in result.out + result.err


def test_dry_run_prints_the_plan_and_changes_nothing(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    before = state(url)
    result = cli("db", "migrate", "--database-url", url, "--dry-run")
    assert result.code == 0
    assert result.out.splitlines() == [
        "would apply 0001_things after 00_roles.sql",
        "would apply 0002_note after 00_roles.sql",
        "would apply policies: vechat_things.sql",
    ]
    assert state(url) == before
    assert rows(url, "SELECT to_regnamespace('vechat'), to_regclass('public.vechat_things')") == [
        (None, None)
    ]

    assert cli("db", "migrate", "--database-url", url).code == 0
    tiny.write("policies/vechat_things.sql", TINY_POLICY + "-- changed\n")
    before = state(url)
    result = cli("db", "migrate", "--database-url", url, "--dry-run")
    assert result.out.splitlines() == ["would apply policies: vechat_things.sql"]
    result = cli("db", "rollback", "--database-url", url, "--to", "0", "--dry-run")
    assert result.out.splitlines() == ["would roll back 0002_note", "would roll back 0001_things"]
    assert state(url) == before


def test_verify_step_that_raises_rolls_its_migration_back(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    assert cli("db", "migrate", "--database-url", url).code == 0
    tiny.write("migrations/0003_more.up.sql", "CREATE TABLE public.vechat_more (id int);\n")
    tiny.write("migrations/0003_more.down.sql", "DROP TABLE public.vechat_more;\n")
    tiny.write(
        "migrations/0003_more.verify.sql",
        "DO $$ BEGIN RAISE EXCEPTION 'vechat_more has no organisation_id'; END $$;\n",
    )
    before = state(url)

    result = cli("db", "migrate", "--database-url", url)

    assert result.code == 3
    assert result.err.startswith("vechat-rls: 0003_more.verify.sql")
    assert "vechat_more has no organisation_id" in result.err and result.err.count("\n") == 1
    assert state(url) == before


def test_failing_migration_names_file_and_line_and_keeps_earlier_ones(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    tiny.write(
        "migrations/0002_note.up.sql",
        "ALTER TABLE public.vechat_things ADD COLUMN note text;\n\nSELECT no_such_column\n"
        "FROM public.vechat_things;\n",
    )

    result = cli("db", "migrate", "--database-url", url)

    assert result.code == 3
    assert result.out.splitlines()[0].startswith("applied 0001_things")
    assert result.err.startswith('vechat-rls: 0002_note.up.sql line 3: column "no_such_column"')
    assert "[42703]" in result.err
    assert [v for v, *_ in ledger(url)] == [1]
    assert rows(
        url,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.vechat_things'"
        "::regclass AND attname = 'note'",
    ) == [(0,)]
    assert policy_ledger(url) == []  # not at the newest migration: policies wait


def test_transaction_control_in_a_migration_is_refused(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    tiny.write(
        "migrations/0001_things.up.sql",
        "BEGIN;\n" + TINY_MIGRATIONS["0001_things.up.sql"] + "COMMIT;\n",
    )
    result = cli("db", "migrate", "--database-url", url)
    assert result.code == 3
    assert "0001_things.up.sql: remove BEGIN" in result.err
    assert rows(url, "SELECT to_regclass('public.vechat_things')") == [(None,)]


def test_changed_policy_file_is_reapplied_alone(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    tiny.write("policies/vechat_more.sql", "COMMENT ON TABLE public.vechat_things IS 'v1';\n")
    assert cli("db", "migrate", "--database-url", url).code == 0
    migrations_before = ledger(url)
    things_before = [r for r in policy_ledger(url) if r[0] == "vechat_things.sql"]

    tiny.write("policies/vechat_more.sql", "COMMENT ON TABLE public.vechat_things IS 'v2';\n")
    result = cli("db", "migrate", "--database-url", url)

    assert result.code == 0
    assert "applied policies: vechat_more.sql" in result.out
    assert rows(url, "SELECT obj_description('public.vechat_things'::regclass)") == [("v2",)]
    assert ledger(url) == migrations_before
    assert [r for r in policy_ledger(url) if r[0] == "vechat_things.sql"] == things_before
    assert cli("db", "migrate", "--database-url", url).out.startswith("nothing to do")


def test_changed_function_file_is_reapplied_alone_and_before_the_policies(
    tiny: Tiny, cli: Cli
) -> None:
    url = tiny.database.admin_url
    (tiny.dir / "functions").mkdir()
    body = "CREATE OR REPLACE FUNCTION vechat.answer() RETURNS integer LANGUAGE sql RETURN {};\n"
    tiny.write("functions/10_answer.sql", body.format(1))
    # A policy that calls the function: it can only be created once the function exists.
    tiny.write(
        "policies/vechat_uses_answer.sql",
        "DROP POLICY IF EXISTS vechat_things_select_answer ON public.vechat_things;\n"
        "CREATE POLICY vechat_things_select_answer ON public.vechat_things FOR SELECT\n"
        "    USING (vechat.answer() > 0);\n",
    )
    first = cli("db", "migrate", "--database-url", url)
    assert first.code == 0, first.err
    assert "applied functions: 10_answer.sql" in first.out
    policies_before = policy_ledger(url)

    tiny.write("functions/10_answer.sql", body.format(42))
    result = cli("db", "migrate", "--database-url", url)

    assert result.code == 0, result.err
    assert "applied functions: 10_answer.sql" in result.out
    assert "applied policies" not in result.out
    assert rows(url, "SELECT vechat.answer()") == [(42,)]
    assert policy_ledger(url) == policies_before
    assert cli("db", "migrate", "--database-url", url).out.startswith("nothing to do")
    assert "functions: 1 of 1 applied as they are" in cli("db", "status", "--database-url", url).out


def test_policies_wait_until_the_newest_migration(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    result = cli("db", "migrate", "--database-url", url, "--to", "1")
    assert result.code == 0
    assert "policies" not in result.out
    assert policy_ledger(url) == []
    assert rows(
        url, "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.vechat_things'::regclass"
    ) == [(False,)]

    result = cli("db", "migrate", "--database-url", url)
    assert "applied 0002_note" in result.out and "applied policies: vechat_things.sql" in result.out
    assert rows(
        url, "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.vechat_things'::regclass"
    ) == [(True,)]


def test_rollback_runs_downs_newest_first_and_forgets_applied_policies(
    tiny: Tiny, cli: Cli
) -> None:
    url = tiny.database.admin_url
    assert cli("db", "migrate", "--database-url", url).code == 0

    result = cli("db", "rollback", "--database-url", url, "--to", "1")
    assert result.code == 0
    assert result.out.splitlines()[0].startswith("rolled back 0002_note")
    assert [v for v, *_ in ledger(url)] == [1]
    assert policy_ledger(url) == []
    assert rows(
        url,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.vechat_things'"
        "::regclass AND attname = 'note'",
    ) == [(0,)]

    result = cli("db", "migrate", "--database-url", url)
    assert "applied 0002_note" in result.out and "applied policies: vechat_things.sql" in result.out

    result = cli("db", "rollback", "--database-url", url, "--to", "0")
    assert [line.split(" (")[0] for line in result.out.splitlines()] == [
        "rolled back 0002_note",
        "rolled back 0001_things",
        "now at 0000",
    ]
    assert ledger(url) == []
    assert rows(url, "SELECT to_regclass('public.vechat_things')") == [(None,)]


def test_migrate_to_a_version_below_the_current_one_is_refused(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    assert cli("db", "migrate", "--database-url", url).code == 0
    result = cli("db", "migrate", "--database-url", url, "--to", "1")
    assert result.code == 3 and "use db rollback" in result.err


def test_legacy_settings_reach_the_migration(tiny: Tiny, cli: Cli) -> None:
    url = tiny.database.admin_url
    tiny.write(
        "migrations/0003_legacy.up.sql",
        """
CREATE TABLE public.vechat_legacy_seen AS
SELECT current_setting('vechat.legacy_organisation_id', true) AS organisation_id,
       current_setting('vechat.legacy_timezone', true) AS timezone;
""",
    )
    tiny.write("migrations/0003_legacy.down.sql", "DROP TABLE public.vechat_legacy_seen;\n")
    result = cli(
        "db",
        "migrate",
        "--database-url",
        url,
        "--legacy-organisation-id",
        "7",
        "--legacy-timezone",
        "Africa/Tunis",
    )
    assert result.code == 0, result.err
    assert rows(url, "SELECT * FROM public.vechat_legacy_seen") == [("7", "Africa/Tunis")]
