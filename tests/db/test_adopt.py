"""Adopting legacy VeChat databases in place, and rolling back to them (src/vechat_rls/legacy.py).

Every legacy database here is built by tests/legacy.py from the facts we have about the old module
(both unique-key variants, presence and settings present or absent, the older presence table, the
old guide applied by hand) and seeded with the awkward data real databases hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import legacy
from tests.support import seed as h
from tests.support.catalog import differences, snapshot
from tests.support.fixtures import APP_PASSWORD, Cli, CliResult, Database, FreshDatabase
from vechat_rls import migrate

pytestmark = pytest.mark.db

VARIANTS = {
    "plain": legacy.PLAIN,
    "index-key-no-presence-no-settings": legacy.INDEX_KEY_NO_EXTRAS,
    "older-presence": legacy.OLDER_PRESENCE,
    "half-migrated": legacy.HALF_MIGRATED,
}
# Legacy-only columns of the older presence table: kept by adoption, the one catalog difference.
LEGACY_ONLY = {"vechat_presence": ("socket_id", "device_type")}


def query(url: str, text: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(text.encode(), params).fetchall()


def execute(url: str, text: str, params: tuple[Any, ...] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(text.encode(), params)


def legacy_database(
    fresh_database: FreshDatabase, variant: legacy.Variant = legacy.PLAIN
) -> Database:
    db = fresh_database(prefix="legacy")
    legacy.create(db.admin_url, variant)
    return db


def fingerprint(url: str) -> tuple[Any, ...]:
    """Catalog (ours and every schema's relations), every table's rows, every sequence's value."""
    with psycopg.connect(url, autocommit=True) as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
        ).fetchall()
        data = []
        for schema, name, kind in relations:
            if kind == "r":
                data.append(
                    conn.execute(
                        f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' "
                        f'ORDER BY x::text), \'\')) FROM "{schema}"."{name}" x'
                    ).fetchone()
                )
            elif kind == "S":
                data.append(conn.execute(f'SELECT last_value FROM "{schema}"."{name}"').fetchone())
    return snapshot(url), relations, data


def migrate_cli(cli: Cli, db: Database, *args: str) -> CliResult:
    return cli("db", "migrate", "--database-url", db.admin_url, *args)


# What adoption does to a value by documented rule (docs/dba.md): a NULL where the new column is
# NOT NULL becomes its default; an updated_at that was NULL becomes the time of adoption.
DEFAULTS: dict[str, Any] = {
    "is_archived_by_participant1": False,
    "is_archived_by_participant2": False,
    "is_muted_by_participant1": False,
    "is_muted_by_participant2": False,
    "message_type": "text",
    "is_read": False,
    "is_delivered": False,
    "is_deleted_by_sender": False,
    "is_deleted_by_receiver": False,
    "is_edited": False,
    "status": "offline",
    "email_notifications": True,
    "push_notifications": True,
    "sound_notifications": True,
    "theme": "light",
    "font_size": "medium",
    "show_online_status": True,
    "show_read_receipts": True,
    "custom_settings": {},
}


def assert_rows_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Every legacy row is there with the same values (up to the documented NULL rule)."""
    for table, rows in before.items():
        for key, row in rows.items():
            assert key in after[table], f"{table} {key} lost"
            for column, value in row.items():
                new = after[table][key][column]
                if value is None and column == "updated_at":
                    assert new is not None
                elif value is None and column in DEFAULTS:
                    assert new == DEFAULTS[column], (table, key, column, new)
                else:
                    assert new == value, (table, key, column, value, new)


def counters(url: str) -> dict[int, tuple[int, int]]:
    return {
        r[0]: (r[1], r[2])
        for r in query(
            url,
            "SELECT id, unread_count_participant1, unread_count_participant2 "
            "FROM public.vechat_conversations ORDER BY id",
        )
    }


# --- adoption ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_adoption_keeps_every_row_and_value(
    fresh_database: FreshDatabase, cli: Cli, name: str
) -> None:
    variant = VARIANTS[name]
    db = legacy_database(fresh_database, variant)
    extra = LEGACY_ONLY if variant.presence == "composite" else None
    before = legacy.rows(db.admin_url, extra=extra)

    result = migrate_cli(cli, db)

    assert result.code == 0, result.out + result.err
    after = legacy.rows(db.admin_url, extra=extra)
    assert_rows_kept(before, after)
    assert len(after["vechat_messages"]) == len(before["vechat_messages"]) == 10
    # One conversation for each of the two orphan pairs, after the legacy ids.
    assert sorted(after["vechat_conversations"]) == [1, 2, 3, 4, 5]
    assert query(
        db.admin_url,
        "SELECT id, participant1_type, participant1_id, participant2_type, participant2_id, "
        "last_message_id, created_at::text FROM public.vechat_conversations WHERE id > 3 "
        "ORDER BY id",
    ) == [
        (4, "personnel", 7, "client", 12, 9, "2025-03-04 14:00:00+00"),
        (5, "personnel", 5, "client", 9, 10, "2025-03-05 16:00:00+00"),
    ]
    assert {
        r[0]
        for r in query(db.admin_url, "SELECT DISTINCT organisation_id FROM public.vechat_messages")
    } == {1}


def test_each_message_belongs_to_the_conversation_of_its_pair(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    assert query(
        db.admin_url, "SELECT id, conversation_id FROM public.vechat_messages ORDER BY id"
    ) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (7, 2), (8, 4), (9, 4), (10, 5)]


def test_counters_are_recounted_from_the_messages(fresh_database: FreshDatabase, cli: Cli) -> None:
    db = legacy_database(fresh_database)
    assert counters(db.admin_url) == {1: (9, None), 2: (4, 7), 3: (None, None)}  # as left

    result = migrate_cli(cli, db)

    assert "recounted every unread counter: 4 conversations corrected" in result.out
    # Conversation 1: client 5 has messages 2, 3 and 5 unread (message 5 is hidden for its
    # sender only); message 4 is hidden by its receiver. Conversation 2: message 6.
    assert counters(db.admin_url) == {1: (3, 0), 2: (1, 0), 3: (0, 0), 4: (1, 1), 5: (1, 0)}
    assert query(db.admin_url, "SELECT vechat.recount_unread(1)") == [(0,)]


def test_adopted_catalog_equals_a_fresh_install(
    fresh_database: FreshDatabase, cli: Cli, migrated_database: Database
) -> None:
    for name, variant in VARIANTS.items():
        db = legacy_database(fresh_database, variant)
        assert migrate_cli(cli, db).code == 0, name
        diff = differences(snapshot(migrated_database.admin_url), snapshot(db.admin_url))
        kept = LEGACY_ONLY["vechat_presence"] if variant.presence == "composite" else ()
        expected = [line for line in diff if any(f"'vechat_presence', '{c}'" in line for c in kept)]
        assert diff == expected, name
        assert len(expected) == len(kept), name


@pytest.mark.parametrize("name", list(VARIANTS))
def test_adopted_database_passes_verify_and_audit(
    fresh_database: FreshDatabase, cli: Cli, name: str
) -> None:
    db = legacy_database(fresh_database, VARIANTS[name])
    assert migrate_cli(cli, db).code == 0

    verify = cli("db", "verify", "--database-url", db.admin_url)
    audit = cli("audit", "--database-url", db.admin_url)

    assert verify.code == 0, verify.out
    assert "ok    legacy adoption:" in verify.out
    assert "vechat_messages: 10 rows before adoption, 10 after" in verify.out
    assert (
        "vechat_conversations: 3 rows before adoption, 5 after (+2 conversations for "
        "orphan pairs)" in verify.out
    )
    assert "schema vechat_legacy: " in verify.out and "all empty" in verify.out
    assert (audit.code, audit.out.splitlines()[-1]) == (0, "findings: none")
    assert query(db.admin_url, "SELECT count(*) FROM vechat_audit.findings()") == [(0,)]


def test_the_old_guides_verification_queries_return_what_it_expects(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    # As the guide wrote them.
    columns = query(
        db.admin_url,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name IN ('vechat_conversations', 'vechat_messages', 'vechat_presence', "
        "'vechat_user_settings') AND column_name = 'organisation_id' ORDER BY table_name",
    )
    assert [c[:2] for c in columns] == [(t, "organisation_id") for t in legacy.TABLES]
    for table in legacy.TABLES:
        total, with_org = query(
            db.admin_url, f"SELECT COUNT(*), COUNT(organisation_id) FROM {table}"
        )[0]
        assert total == with_org and total > 0, table


def test_second_run_changes_nothing(fresh_database: FreshDatabase, cli: Cli) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    before = fingerprint(db.admin_url)

    result = migrate_cli(cli, db)

    assert (result.code, result.out.splitlines()[0]) == (
        0,
        f"nothing to do: at {migrate.load_layout().migrations[-1].label}, functions and policies"
        " up to date",
    )
    assert fingerprint(db.admin_url) == before


@pytest.mark.parametrize("name", list(VARIANTS))
def test_dry_run_prints_the_plan_and_changes_nothing(
    fresh_database: FreshDatabase, cli: Cli, name: str
) -> None:
    db = legacy_database(fresh_database, VARIANTS[name])
    before = fingerprint(db.admin_url)

    result = migrate_cli(cli, db, "--dry-run")

    assert result.code == 0, result.out + result.err
    assert "legacy VeChat tables found: would adopt them as organisation 1" in result.out
    assert "vechat_messages: 10 rows" in result.out
    assert "would create 2 conversations for message pairs that have none" in result.out
    assert "would apply policies:" in result.out
    assert fingerprint(db.admin_url) == before


def test_a_real_run_prints_each_step_with_rows_and_seconds(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    out = migrate_cli(cli, db).out
    for line in (
        "  locked vechat_conversations, vechat_messages, vechat_presence, vechat_user_settings "
        "(ACCESS EXCLUSIVE, until commit) (",
        "  copied vechat_messages: 10 rows (",
        "  created conversations for message pairs that had none: 2 rows (",
        "  moved the legacy tables to schema vechat_legacy: 2 triggers dropped (",
    ):
        assert line in out, out
    assert "adopted as organisation 1 in " in out


def test_naive_timestamps_are_read_in_the_legacy_timezone(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    result = migrate_cli(cli, db, "--legacy-timezone", "Africa/Tunis")  # UTC+1, no DST
    assert result.code == 0, result.err
    assert query(
        db.admin_url, "SELECT created_at::text FROM public.vechat_messages WHERE id = 1"
    ) == [("2025-03-01 09:00:00+00",)]


def test_the_legacy_counting_triggers_are_gone_and_a_new_message_counts_once(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    assert query(
        db.admin_url,
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'trg_vechat_update_conversation%'",
    ) == [(0,)]
    # As the application writes: vechat_app in the sender's context.
    execute(db.admin_url, f"ALTER ROLE vechat_app LOGIN PASSWORD '{APP_PASSWORD}'")
    with psycopg.connect(db.app_url) as conn:
        h.act_as(conn, 1, h.User(5, "personnel"))  # a context signed as the API does
        row = conn.execute(
            "INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,"
            " receiver_id, receiver_type, message) VALUES (1, 1, 5, 'personnel', 5, 'client', 'x')"
            " RETURNING id"
        ).fetchone()
    assert counters(db.admin_url)[1] == (4, 0)
    # Legacy ids stay; the organisation's new ones continue right after the highest of them.
    assert row is not None
    legacy_max = query(db.admin_url, f"SELECT max(id) FROM vechat_messages WHERE id <> {row[0]}")
    assert row is not None and row[0] == legacy_max[0][0] + 1


def test_half_migrated_rows_keep_their_organisation_and_nulls_get_the_operators(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    variant = legacy.Variant(unique_key="index", guide=frozenset(legacy.TABLES), guide_value=7)
    db = legacy_database(fresh_database, variant)
    assert (
        query(db.admin_url, "SELECT count(*) FROM vechat_messages WHERE organisation_id IS NULL")[
            0
        ][0]
        > 0
    )

    result = migrate_cli(cli, db, "--legacy-organisation-id", "7")

    assert result.code == 0, result.out + result.err
    for table in legacy.TABLES:
        assert query(db.admin_url, f"SELECT DISTINCT organisation_id FROM public.{table}") == [
            (7,)
        ], table


# --- refusals: nothing changes -------------------------------------------------------------------


def test_an_operator_id_that_contradicts_the_rows_is_refused_naming_both(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database, legacy.HALF_MIGRATED)  # rows say organisation 1
    before = fingerprint(db.admin_url)

    result = migrate_cli(cli, db, "--legacy-organisation-id", "2")

    assert result.code == 3
    assert (
        "PROBLEM  vechat_messages holds rows of organisation 1, but the legacy organisation id "
        "is 2 (--legacy-organisation-id (or the registry))"
    ) in result.out
    assert "legacy adoption refused: 3 problem(s) listed above; nothing was changed" in result.err
    assert fingerprint(db.admin_url) == before


def test_the_default_organisation_that_contradicts_the_rows_is_refused(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    variant = legacy.Variant(guide=frozenset({"vechat_messages"}), guide_value=4)
    db = legacy_database(fresh_database, variant)
    before = fingerprint(db.admin_url)
    result = migrate_cli(cli, db)
    assert result.code == 3
    assert (
        "holds rows of organisation 4, but the legacy organisation id is 1 (the default): "
        "pass --legacy-organisation-id 4" in result.out
    )
    assert fingerprint(db.admin_url) == before


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            "INSERT INTO vechat_messages (sender_id, sender_type, receiver_id, receiver_type, "
            "message) VALUES (5, 'client', 5, 'client', 'note to self')",
            "vechat_messages: 1 rows with messages to oneself",
        ),
        (
            "UPDATE vechat_messages SET reply_to_message_id = 6 WHERE id = 2",
            "vechat_messages: 1 rows with replies to a message of another conversation",
        ),
        (
            "UPDATE vechat_messages SET location_latitude = 91 WHERE id = 4",
            "vechat_messages: 1 rows with coordinates out of range",
        ),
        (
            "UPDATE vechat_user_settings SET theme = 'solarized' WHERE user_id = 11",
            "vechat_user_settings: 1 rows with themes other than light, dark, auto",
        ),
        (
            "CREATE VIEW chat_report AS SELECT sender_id, count(*) FROM vechat_messages GROUP BY 1",
            "view chat_report reads vechat_messages",
        ),
    ],
)
def test_rows_the_new_schema_cannot_take_are_refused_and_nothing_changes(
    fresh_database: FreshDatabase, cli: Cli, damage: str, problem: str
) -> None:
    db = legacy_database(fresh_database)
    execute(db.admin_url, "SET session_replication_role = replica; " + damage)
    before = fingerprint(db.admin_url)

    dry = migrate_cli(cli, db, "--dry-run")
    result = migrate_cli(cli, db)

    assert (dry.code, result.code) == (3, 3)
    assert problem in dry.out and problem in result.out, result.out
    assert "nothing was changed" in result.err
    assert fingerprint(db.admin_url) == before


def test_an_unknown_timezone_is_refused(fresh_database: FreshDatabase, cli: Cli) -> None:
    db = legacy_database(fresh_database)
    result = migrate_cli(cli, db, "--legacy-timezone", "Mars/Olympus")
    assert result.code == 3
    assert "unknown time zone 'Mars/Olympus'" in result.out


# --- through the API, after adoption -------------------------------------------------------------


async def test_users_see_their_legacy_history_through_the_api_and_others_see_nothing(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    from tests.support.api import Caller, api_client

    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    execute(db.admin_url, f"ALTER ROLE vechat_app LOGIN PASSWORD '{APP_PASSWORD}'")
    client5 = Caller(1, 5, "client")
    personnel5 = Caller(1, 5, "personnel")
    stranger = Caller(2, 5, "personnel")  # the same user id in another organisation

    async with api_client(db) as api:
        listed = (await api.get("/api/v1/conversations", headers=personnel5.headers)).json()
        assert [c["id"] for c in listed["items"]] == [5, 1]
        archived = await api.get(
            "/api/v1/conversations", params={"archived": "true"}, headers=personnel5.headers
        )
        assert [c["id"] for c in archived.json()["items"]] == [2]  # archived by him, as it was
        page = (await api.get("/api/v1/conversations/1/messages", headers=client5.headers)).json()[
            "items"
        ]
        assert [m["id"] for m in page] == [1, 2, 3, 4, 5]
        first, second, voice, location, image = page
        assert (first["body"], first["created_at"]) == (
            "Bonjour, ma commande ?",
            "2025-03-01T10:00:00Z",
        )
        assert first["read_at"] == "2025-03-01T10:01:00Z"
        assert second["reply_to"]["id"] == 1 and second["edited_at"] == "2025-03-01T10:03:00Z"
        assert (voice["message_type"], voice["audio"]["duration_s"]) == ("audio", 7)
        assert voice["reply_to"]["id"] == 2 and location["reply_to"]["id"] == 3
        assert location["location"]["latitude"] == 0 and location["location"]["longitude"] == 0
        assert image["message_type"] == "image"
        edits = (await api.get("/api/v1/messages/2/edits", headers=client5.headers)).json()
        assert [(e["body"], e["edited_at"]) for e in edits["items"]] == [
            ("Elle part aujourd'hui", "2025-03-01T10:03:00Z")
        ]
        # What each participant hid for themselves stays hidden for them alone.
        mine = (
            await api.get("/api/v1/conversations/1/messages", headers=personnel5.headers)
        ).json()["items"]
        assert [m["id"] for m in mine] == [1, 2, 3]
        conversation = (await api.get("/api/v1/conversations/1", headers=client5.headers)).json()
        assert conversation["unread_count"] == 3

        sent = await api.post(
            "/api/v1/conversations/1/messages",
            json={"body": "Elle est partie"},
            headers=personnel5.headers,
        )
        assert sent.status_code == 201, sent.text
        conversation = (await api.get("/api/v1/conversations/1", headers=client5.headers)).json()
        assert conversation["unread_count"] == 4

        assert (await api.get("/api/v1/conversations", headers=stranger.headers)).json()[
            "items"
        ] == []
        assert (
            await api.get("/api/v1/conversations/1", headers=stranger.headers)
        ).status_code == 404
        assert (
            await api.get("/api/v1/conversations/1/messages", headers=stranger.headers)
        ).status_code == 404


# --- rollback ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "index-key-no-presence-no-settings", "older-presence"])
def test_rollback_restores_the_legacy_catalog_and_rows(
    fresh_database: FreshDatabase, cli: Cli, name: str
) -> None:
    variant = VARIANTS[name]
    db = legacy_database(fresh_database, variant)
    extra = LEGACY_ONLY if variant.presence == "composite" else None
    catalog_before = snapshot(db.admin_url)
    rows_before = legacy.rows(db.admin_url, extra=extra)
    assert migrate_cli(cli, db).code == 0

    result = cli("db", "rollback", "--database-url", db.admin_url, "--to", "0")

    assert result.code == 0, result.out + result.err
    diff = differences(catalog_before, snapshot(db.admin_url))
    # Schema vechat stays: it holds the ledger, which outlives a rollback to 0.
    assert [line for line in diff if not line.startswith("schemas: only right: ('vechat',")] == []
    rows_after = legacy.rows(db.admin_url, extra=extra)
    assert_rows_kept(rows_before, rows_after)
    assert sorted(rows_after["vechat_conversations"]) == [1, 2, 3, 4, 5]  # orphans' stay
    assert query(db.admin_url, "SELECT to_regnamespace('vechat_legacy')") == [(None,)]
    assert query(db.admin_url, "SELECT count(*) FROM vechat.schema_migrations") == [(0,)]


def test_rollback_then_migrate_round_trips(fresh_database: FreshDatabase, cli: Cli) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    adopted = legacy.rows(db.admin_url)
    assert cli("db", "rollback", "--database-url", db.admin_url, "--to", "0").code == 0
    assert migrate_cli(cli, db).code == 0
    assert legacy.rows(db.admin_url) == adopted
    assert query(db.admin_url, "SELECT vechat.recount_unread(1)") == [(0,)]


def test_rollback_keeps_rows_written_after_the_upgrade_and_the_legacy_app_writes_again(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    execute(db.admin_url, f"ALTER ROLE vechat_app LOGIN PASSWORD '{APP_PASSWORD}'")
    with psycopg.connect(db.app_url) as conn:
        h.act_as(conn, 1, h.User(5, "client"))  # a context signed as the API does
        conn.execute(
            "INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,"
            " receiver_id, receiver_type, message) VALUES (1, 1, 5, 'client', 5, 'personnel', "
            "'after the upgrade')"
        )
        # Delete for everyone, and hide the conversation for client 5: the legacy shape has
        # neither, so both come back as its delete-for-me flags.
        conn.execute(
            "UPDATE vechat_messages SET deleted_at = now() WHERE organisation_id = 1 AND id = 1"
        )
        conn.execute(
            "UPDATE vechat_conversations SET hidden_through_message_id_participant1 = 2 "
            "WHERE organisation_id = 1 AND id = 1"
        )

    result = cli("db", "rollback", "--database-url", db.admin_url, "--to", "0")

    assert result.code == 0, result.out + result.err
    assert query(
        db.admin_url,
        "SELECT id, message, is_deleted_by_sender, is_deleted_by_receiver FROM vechat_messages "
        "WHERE id IN (1, 2, 11) ORDER BY id",
    ) == [
        (1, None, True, True),  # deleted for everyone
        (2, "Elle part demain", False, True),  # sent to client 5, who hid the conversation
        (11, "after the upgrade", False, False),
    ]
    # The old module writes again: its trigger counts the new message into the conversation.
    execute(
        db.admin_url,
        "INSERT INTO vechat_messages (sender_id, sender_type, receiver_id, receiver_type, "
        "message) VALUES (7, 'personnel', 5, 'personnel', 'legacy again')",
    )
    assert query(
        db.admin_url,
        "SELECT last_message_id, unread_count_participant1 FROM vechat_conversations WHERE id = 2",
    ) == [(12, 2)]


def test_rollback_of_a_half_migrated_database_follows_the_old_guide(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database, legacy.HALF_MIGRATED)
    rows_before = legacy.rows(db.admin_url)
    assert migrate_cli(cli, db).code == 0
    assert cli("db", "rollback", "--database-url", db.admin_url, "--to", "0").code == 0

    assert (
        query(
            db.admin_url,
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'organisation_id' "
            "AND table_schema = 'public'",
        )
        == []
    )
    unique = query(
        db.admin_url,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indisunique AND NOT indisprimary "
        "AND indrelid::regclass::text LIKE 'vechat%' ORDER BY 1",
    )
    assert unique == [
        ('"IDX_vechat_conversations_participants"',),
        ('"IDX_vechat_presence_user"',),
        ('"IDX_vechat_user_settings_user"',),
    ]
    assert_rows_kept(rows_before, legacy.rows(db.admin_url))


def test_rollback_refuses_when_the_database_holds_two_organisations(
    fresh_database: FreshDatabase, cli: Cli
) -> None:
    db = legacy_database(fresh_database)
    assert migrate_cli(cli, db).code == 0
    execute(
        db.admin_url,
        "INSERT INTO public.vechat_contacts (organisation_id, user_id, user_type, display_name) "
        "VALUES (2, 40, 'personnel', 'Other org')",
    )
    before = fingerprint(db.admin_url)

    dry = cli("db", "rollback", "--database-url", db.admin_url, "--to", "0", "--dry-run")
    result = cli("db", "rollback", "--database-url", db.admin_url, "--to", "0")

    assert (dry.code, result.code) == (3, 3)
    assert (
        "the database holds rows of 2 organisations (organisation 1: vechat_conversations, "
        "vechat_message_edits, vechat_messages, vechat_presence, vechat_user_settings; "
        "organisation 2: vechat_contacts)"
    ) in result.err
    assert fingerprint(db.admin_url) == before


# --- the fleet -----------------------------------------------------------------------------------


def test_all_adopts_each_database_of_the_registry_and_reports_the_one_it_cannot_reach(
    fresh_database: FreshDatabase, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    velosi = legacy_database(fresh_database)
    second = legacy_database(fresh_database, legacy.INDEX_KEY_NO_EXTRAS)
    third = legacy_database(fresh_database, legacy.OLDER_PRESENCE)
    gone = "postgresql://postgres@127.0.0.1:9/nowhere"  # nothing listens on port 9
    registry = tmp_path / "registry.toml"

    def write(third_url: str) -> None:
        registry.write_text(
            "".join(
                f'[[databases]]\nname = "{name}"\nurl = "{url}"\nadmin_url = "{url}"\n'
                f"organisations = [{org}]\n\n"
                for name, url, org in (
                    ("velosi", velosi.admin_url, 1),
                    ("organisation_2", second.admin_url, 2),
                    ("organisation_3", third_url, 3),
                )
            )
        )

    write(gone)
    monkeypatch.setenv(migrate.REGISTRY_ENV, str(registry))
    first = cli("db", "migrate", "--all")

    assert first.code == 3
    assert "2 of 3 databases ok; could not be done: organisation_3" in first.out
    assert "vechat-rls: organisation_3: cannot connect to" in first.err
    assert "[velosi]" in first.out and "adopted as organisation 1" in first.out
    assert "adopted as organisation 2" in first.out  # the entry's only organisation
    assert query(second.admin_url, "SELECT DISTINCT organisation_id FROM vechat_messages") == [(2,)]

    write(third.admin_url)
    again = cli("db", "migrate", "--all")

    assert again.code == 0, again.out + again.err
    assert again.out.count("nothing to do") == 2 and "adopted as organisation 3" in again.out
    assert "3 of 3 databases ok" in again.out
    verify = cli("db", "verify", "--all")
    assert verify.code == 0 and verify.out.count("ok    legacy adoption:") == 3
