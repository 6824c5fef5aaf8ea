"""The isolation audit (vechat_audit views, findings(), `vechat-rls audit`) on real databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database, FreshDatabase
from tests.support.postgres import TestPostgres
from vechat_rls.cli import main
from vechat_rls.pgserver import free_port

pytestmark = pytest.mark.db

AUDIT_VIEWS = ("tables", "policies", "objects", "privileged_roles", "grants")


def execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements.encode())


def findings(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT severity, object, problem FROM vechat_audit.findings()"
        ).fetchall()


def audit(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["audit", "--database-url", url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def role_altered(url: str, change: str, restore: str) -> Iterator[None]:
    """Roles are cluster-wide: whatever a test does to one is undone before the next test."""
    execute(url, change)
    try:
        yield
    finally:
        execute(url, restore)


def test_audit_is_clean_after_migrate(
    migrated_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = audit(capsys, migrated_database.admin_url)
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("findings: none")
    assert "vechat_messages" in out and " NO " not in out

    code, out, _ = audit(capsys, migrated_database.admin_url, "--json")
    document = json.loads(out)
    assert code == 0 and document["clean"] is True
    [database] = document["databases"]
    assert database["findings"] == [] and database["error"] is None
    assert "***" in database["url"] and "vechat-local-superuser" not in out
    assert {t["table_name"] for t in database["tables"]} >= {
        "vechat_conversations",
        "vechat_messages",
        "vechat_presence",
        "vechat_user_settings",
    }
    assert all(
        t["rls_enabled"] and t["rls_forced"] and t["has_isolation_policy"]
        for t in database["tables"]
    )


def test_audit_reports_a_table_with_rls_not_forced(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database(migrated=True)
    execute(db.admin_url, "ALTER TABLE public.vechat_messages NO FORCE ROW LEVEL SECURITY")
    code, out, _ = audit(capsys, db.admin_url)
    assert code == 1
    assert "table public.vechat_messages: row-level security is not forced" in out
    assert findings(db.admin_url) == [
        (
            "high",
            "table public.vechat_messages",
            "row-level security is not forced: its owner (and every member of the owner role) "
            "is not subject to the policies",
        )
    ]


def test_audit_reports_a_table_without_rls(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database(migrated=True)
    execute(db.admin_url, "ALTER TABLE public.vechat_contacts DISABLE ROW LEVEL SECURITY")
    code, out, _ = audit(capsys, db.admin_url)
    assert code == 1
    assert "critical  table public.vechat_contacts: row-level security is not enabled" in out


def test_audit_reports_bypassrls_granted_to_the_app_role(
    migrated_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url = migrated_database.admin_url
    with role_altered(url, "ALTER ROLE vechat_app BYPASSRLS", "ALTER ROLE vechat_app NOBYPASSRLS"):
        code, out, _ = audit(capsys, url)
        assert code == 1
        assert "critical  role vechat_app: has BYPASSRLS" in out
    assert audit(capsys, url)[0] == 0


def test_audit_reports_a_superuser_app_role(
    migrated_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url = migrated_database.admin_url
    with role_altered(url, "ALTER ROLE vechat_app SUPERUSER", "ALTER ROLE vechat_app NOSUPERUSER"):
        code, out, _ = audit(capsys, url)
        assert code == 1
        assert "critical  role vechat_app: is a superuser" in out


def test_audit_reports_an_app_role_that_owns_a_table(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database(migrated=True)
    execute(
        db.admin_url,
        """
        CREATE TABLE public.vechat_scratch (organisation_id bigint NOT NULL, note text);
        ALTER TABLE public.vechat_scratch OWNER TO vechat_app;
    """,
    )
    code, out, _ = audit(capsys, db.admin_url, "--json")
    assert code == 1
    problems = {
        (f["object"], f["problem"].split(":")[0])
        for f in json.loads(out)["databases"][0]["findings"]
    }
    assert (
        "table public.vechat_scratch",
        "is owned by vechat_app, a role that may log in with access to tenant tables",
    ) in problems
    assert ("table public.vechat_scratch", "row-level security is not enabled") in problems


def test_audit_reports_an_app_role_that_is_a_member_of_the_owner(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database(migrated=True)
    url = db.admin_url
    # vechat_app itself can no longer be made one: vechat_owner is a member of vechat_app (to
    # read backend start times, db/policies/00_roles.sql), and PostgreSQL refuses the cycle.
    with pytest.raises(psycopg.errors.InvalidGrantOperation):
        execute(url, "GRANT vechat_owner TO vechat_app")
    execute(url, "CREATE ROLE vechat_reporting_owner_test LOGIN")
    try:
        execute(url, "GRANT SELECT ON public.vechat_messages TO vechat_reporting_owner_test")
        execute(url, "GRANT vechat_owner TO vechat_reporting_owner_test")
        code, out, _ = audit(capsys, url)
        assert code == 1
        assert "role vechat_reporting_owner_test: is a member of vechat_owner, which owns" in out
    finally:
        execute(url, "DROP OWNED BY vechat_reporting_owner_test")
        execute(url, "DROP ROLE vechat_reporting_owner_test")


def test_audit_reports_any_login_role_with_dml_that_bypasses_rls(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database(migrated=True)
    url = db.admin_url
    execute(url, "CREATE ROLE vechat_reporting_test LOGIN BYPASSRLS")
    try:
        execute(url, "GRANT SELECT ON public.vechat_messages TO vechat_reporting_test")
        code, out, _ = audit(capsys, url)
        assert code == 1
        assert "critical  role vechat_reporting_test: has BYPASSRLS" in out
    finally:
        execute(url, "DROP OWNED BY vechat_reporting_test; DROP ROLE vechat_reporting_test")


def test_audit_reports_a_missing_or_permissive_isolation_policy(
    fresh_database: FreshDatabase,
) -> None:
    db = fresh_database(migrated=True)
    execute(
        db.admin_url,
        """
        DROP POLICY vechat_presence_organisation_isolation ON public.vechat_presence;
        DROP POLICY vechat_user_settings_organisation_isolation ON public.vechat_user_settings;
        CREATE POLICY vechat_user_settings_organisation_isolation ON public.vechat_user_settings
            USING (organisation_id = (SELECT vechat.current_organisation_id()));
    """,
    )
    assert findings(db.admin_url) == [
        (
            "critical",
            "table public.vechat_presence",
            "has no restrictive policy vechat_presence_organisation_isolation: "
            "nothing enforces the organisation rule",
        ),
        (
            "critical",
            "table public.vechat_user_settings",
            "has no restrictive policy vechat_user_settings_organisation_isolation: "
            "nothing enforces the organisation rule",
        ),
        (
            "critical",
            "table public.vechat_user_settings",
            "policy vechat_user_settings_organisation_isolation is PERMISSIVE: it widens access "
            "instead of restricting it",
        ),
    ]


def test_audit_reports_a_tenant_table_without_organisation_id(
    fresh_database: FreshDatabase,
) -> None:
    db = fresh_database(migrated=True)
    execute(
        db.admin_url,
        """
        SET ROLE vechat_owner;
        CREATE TABLE public.vechat_loose (id bigint);
        ALTER TABLE public.vechat_loose ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.vechat_loose FORCE ROW LEVEL SECURITY;
    """,
    )
    assert (
        "critical",
        "table public.vechat_loose",
        "has no organisation_id column: its rows belong to no organisation",
    ) in findings(db.admin_url)


def test_audit_reports_security_definer_function_without_search_path(
    fresh_database: FreshDatabase,
) -> None:
    db = fresh_database(migrated=True)
    execute(
        db.admin_url,
        """
        SET ROLE vechat_owner;
        CREATE FUNCTION vechat.scratch_definer() RETURNS int LANGUAGE sql SECURITY DEFINER
            AS 'SELECT 1';
        CREATE FUNCTION vechat.scratch_pinned() RETURNS int LANGUAGE sql SECURITY DEFINER
            SET search_path = '' AS 'SELECT 1';
    """,
    )
    assert findings(db.admin_url) == [
        (
            "high",
            "function vechat.scratch_definer()",
            "is SECURITY DEFINER without a pinned search_path: "
            "a caller can redirect the names it uses",
        )
    ]


def test_audit_reports_app_access_to_a_helper_table_without_rls(
    fresh_database: FreshDatabase,
) -> None:
    db = fresh_database(migrated=True)
    execute(db.admin_url, "GRANT SELECT ON vechat.schema_migrations TO vechat_app")
    assert findings(db.admin_url) == [
        (
            "high",
            "table vechat.schema_migrations",
            "vechat_app may use it, but it has no row-level security "
            "(only tenant tables with forced RLS are for the application)",
        )
    ]


def test_auditor_role_reads_every_audit_view_and_no_tenant_row(
    migrated_database: Database, postgres: TestPostgres
) -> None:
    url = migrated_database.admin_url
    execute(
        url,
        "DROP ROLE IF EXISTS audit_test_alice; "
        "CREATE ROLE audit_test_alice LOGIN PASSWORD 'alice' IN ROLE vechat_auditor",
    )
    try:
        alice = postgres.app_url(migrated_database.name, user="audit_test_alice", password="alice")
        with psycopg.connect(alice, autocommit=True) as conn:
            counts: dict[str, Any] = {}
            for view in AUDIT_VIEWS:
                row = conn.execute(f"SELECT count(*) FROM vechat_audit.{view}").fetchone()
                counts[view] = row[0] if row else None
            assert conn.execute("SELECT * FROM vechat_audit.findings()").fetchall() == []
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT count(*) FROM public.vechat_messages")
        assert counts["tables"] >= 4 and counts["policies"] > counts["tables"]
        assert counts["privileged_roles"] >= 2  # the DBA (a superuser) and vechat_owner
    finally:
        execute(url, "DROP ROLE audit_test_alice")


def test_app_role_cannot_use_the_audit_schema(migrated_database: Database) -> None:
    with (
        psycopg.connect(migrated_database.app_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT * FROM vechat_audit.findings()")


def test_audit_of_a_database_that_is_not_migrated_is_a_one_line_error(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    db = fresh_database()
    code, out, err = audit(capsys, db.admin_url)
    assert (code, out) == (3, "")
    assert err == (
        "vechat-rls: schema vechat_audit is missing: this database is not migrated "
        "(vechat-rls db migrate)\n"
    )


WALKTHROUGH_DATA = """
BEGIN;
SELECT vechat.act_as({org}, {user}, 'personnel');
SET LOCAL ROLE vechat_app;
INSERT INTO vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type)
VALUES ({org}, {user}, 'personnel', {peer}, 'client');
INSERT INTO vechat_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type, message)
SELECT {org}, id, {user}, 'personnel', {peer}, 'client', 'hello from organisation {org}'
FROM vechat_conversations;
COMMIT;
"""


def walkthrough_database(fresh_database: FreshDatabase) -> Database:
    """The data of docs/auditing.md step 6: one message in organisation 1, one in 2."""
    db = fresh_database(migrated=True)
    execute(db.admin_url, WALKTHROUGH_DATA.format(org=1, user=10, peer=11))
    execute(db.admin_url, WALKTHROUGH_DATA.format(org=2, user=20, peer=21))
    return db


def test_walkthrough_tenant_context_sees_one_organisation_and_no_context_sees_nothing(
    fresh_database: FreshDatabase,
) -> None:
    """docs/auditing.md step 6, statement for statement."""
    db = walkthrough_database(fresh_database)
    with psycopg.connect(db.admin_url) as conn:  # one transaction, rolled back at the end
        conn.execute("SET LOCAL ROLE vechat_app")
        assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (0,)
        conn.execute("""
            SELECT set_config('vechat.organisation_id', '1', true),
                   set_config('vechat.user_id', '10', true),
                   set_config('vechat.user_type', 'personnel', true)
        """)
        assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (0,)
        conn.execute("SET LOCAL ROLE NONE")
        conn.execute("SELECT vechat.act_as(1, 10, 'personnel')")
        conn.execute("SET LOCAL ROLE vechat_app")
        assert conn.execute("SELECT organisation_id, message FROM vechat_messages").fetchall() == [
            (1, "hello from organisation 1")
        ]
        assert conn.execute(
            "SELECT count(*) FROM vechat_messages WHERE organisation_id = 2"
        ).fetchone() == (0,)
        conn.execute("SELECT vechat.leave()")
        assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (0,)
        conn.execute("SET LOCAL ROLE NONE")
        conn.execute("SELECT vechat.act_as(2, 20, 'personnel')")
        conn.execute("SET LOCAL ROLE vechat_app")
        assert conn.execute("SELECT organisation_id, message FROM vechat_messages").fetchall() == [
            (2, "hello from organisation 2")
        ]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="organisation_isolation"):
            conn.execute("""
                INSERT INTO vechat_conversations (organisation_id, participant1_id,
                    participant1_type, participant2_id, participant2_type)
                VALUES (1, 20, 'personnel', 22, 'client')
            """)
        conn.rollback()


def test_walkthrough_read_events_acts_for_each_recipient_and_leaves_no_context(
    fresh_database: FreshDatabase,
) -> None:
    """docs/auditing.md step 6, "Functions that act for several users": without a token signed
    for the connection, nobody; with one per recipient, each recipient's own rows, then nobody."""
    db = walkthrough_database(fresh_database)
    with psycopg.connect(db.app_url) as conn:
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="not a signed"):
            conn.execute("SELECT vechat.read_events('[[2, \"personnel\", 20, 0, null]]')")
        conn.rollback()
        tokens = [h.signed_token(conn, 1, h.User(10, "personnel")),
                  h.signed_token(conn, 2, h.User(20, "personnel"))]
        rows = conn.execute(
            """
            SELECT organisation_id, recipient_id, seq, event_type, (message).message
            FROM vechat.read_events(%s::jsonb)
            """,
            (json.dumps([[1, "personnel", 10, 0, tokens[0]], [2, "personnel", 20, 0, tokens[1]]]),),
        ).fetchall()
        assert rows == [
            (1, 10, 1, "message.created", "hello from organisation 1"),
            (2, 20, 1, "message.created", "hello from organisation 2"),
        ]
        assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (0,)
        conn.rollback()


UNSIGNED_CONTEXT = """
SET ROLE vechat_owner;
CREATE OR REPLACE VIEW vechat.context WITH (security_invoker = true) AS
SELECT NULLIF(current_setting('vechat.organisation_id', true), '')::bigint AS organisation_id,
       NULLIF(current_setting('vechat.user_id', true), '')::bigint AS user_id,
       NULLIF(current_setting('vechat.user_type', true), '') AS user_type,
       NULLIF(current_setting('vechat.role', true), '') AS role;
RESET ROLE;
"""


def test_audit_reports_a_database_that_accepts_unsigned_contexts(
    fresh_database: FreshDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database whose context is a plain setting again (as before contexts were signed, or a
    view edited by hand): `vechat-rls audit` exits 1 and says so; signed, it is clean."""
    db = fresh_database(migrated=True)
    assert audit(capsys, db.admin_url)[0] == 0
    execute(db.admin_url, UNSIGNED_CONTEXT)
    code, out, _ = audit(capsys, db.admin_url)
    assert code == 1
    assert "critical  view vechat.context: unsigned contexts are accepted" in out, out
    # The same as the auditor sees it in psql.
    assert ("critical", "view vechat.context",
            "unsigned contexts are accepted: a plain set_config() by the application role makes "
            "a transaction act for an organisation") in findings(db.admin_url)


def test_audit_json_reports_an_unreachable_database_as_not_audited(
    migrated_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not `"clean": false` as if it had been audited: `null`, its error, and exit 3."""
    url = f"postgresql://postgres:pw-not-shown@127.0.0.1:{free_port()}/nowhere"
    code, out, err = audit(capsys, url, "--json")
    document = json.loads(out)
    [database] = document["databases"]
    assert code == 3
    assert database["clean"] is None and document["clean"] is None
    assert database["error"] and "pw-not-shown" not in out + err
    assert database["tables"] == [] and database["findings"] == []


def _sections(out: str) -> dict[str, str]:
    """`audit --all`'s text by database: `[name] url` starts a section, indented lines follow."""
    sections: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("["):
            name = line[1 : line.index("]")]
        elif line.startswith("  ") and name:
            sections[name] = sections.get(name, "") + line.strip() + "\n"
    return sections


def _registry(path: Any, databases: dict[str, str]) -> str:
    entries = [
        f'[[databases]]\nname = "{name}"\nurl = "{url}"\nadmin_url = "{url}"\n'
        f"organisations = [{number}]\n"
        for number, (name, url) in enumerate(databases.items(), start=1)
    ]
    path.write_text("\n".join(entries))
    return str(path)


def test_audit_all_reports_each_database_and_exits_with_the_worst(
    fresh_database: FreshDatabase,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finding is 1, a database that could not be audited is 3, whatever order they come in;
    every database is audited and reported, the unreachable one as not audited."""
    clean, dirty = fresh_database(migrated=True), fresh_database(migrated=True)
    execute(dirty.admin_url, "ALTER TABLE public.vechat_messages NO FORCE ROW LEVEL SECURITY")
    gone = f"postgresql://postgres:pw-not-shown@127.0.0.1:{free_port()}/gone"
    both = {"clean": clean.admin_url, "dirty": dirty.admin_url}

    monkeypatch.setenv("VECHAT_REGISTRY", _registry(tmp_path / "two.toml", both))
    capsys.readouterr()
    assert main(["audit", "--all"]) == 1
    out = capsys.readouterr().out
    sections = _sections(out)
    assert "findings: none" in sections["clean"] and "findings: 1" in sections["dirty"], out
    assert out.endswith("1 of 2 databases clean; findings: dirty\n")

    three = {"gone": gone, **both}
    monkeypatch.setenv("VECHAT_REGISTRY", _registry(tmp_path / "three.toml", three))
    assert main(["audit", "--all"]) == 3
    out, err = capsys.readouterr()
    sections = _sections(out)
    assert "findings: none" in sections["clean"] and "findings: 1" in sections["dirty"], out
    assert out.endswith("1 of 3 databases clean; findings: dirty; could not be audited: gone\n")
    assert err.startswith("vechat-rls: gone: cannot connect to") and "pw-not-shown" not in err

    assert main(["audit", "--all", "--json"]) == 3
    document = json.loads(capsys.readouterr().out)
    verdicts = {d["name"]: d["clean"] for d in document["databases"]}
    assert verdicts == {"gone": None, "clean": True, "dirty": False}
    assert document["clean"] is False  # a finding is a finding, whatever else could not be seen
