"""Composite tenant keys: no reference crosses an organisation, no duplicate key reveals another.

Foreign-key and unique checks ignore row-level security, so the keys themselves carry the
organisation (docs/design.md, "Composite tenant keys"). The cross-organisation references
below are rejected by the foreign keys even for the superuser, whom no policy restrains.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database
from tests.support.postgres import TestPostgres
from tests.support.seed import C1, P1, Seed

pytestmark = pytest.mark.db

ForeignKeyViolation = psycopg.errors.ForeignKeyViolation


@dataclass
class World:
    postgres: TestPostgres
    database: str
    a: Seed
    b: Seed


@pytest.fixture(scope="module")
def world(migrated_database: Database, postgres: TestPostgres) -> Iterator[World]:
    database = migrated_database.name
    with h.organisations(postgres, database, 2) as (a, b):
        with h.admin_connect(postgres, database) as conn:
            seeds = [h.seed_organisation(conn, o) for o in (a, b)]
            conn.commit()
        yield World(postgres, database, *seeds)


@pytest.fixture
def admin(world: World) -> Iterator[psycopg.Connection[Any]]:
    """The superuser, in a transaction that is rolled back."""
    with h.admin_connect(world.postgres, world.database) as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def app(world: World) -> Iterator[psycopg.Connection[Any]]:
    """vechat_app, in a transaction that is rolled back."""
    with h.app_connect(world.postgres, world.database) as conn:
        yield conn
        conn.rollback()


def rejected(conn: psycopg.Connection[Any], constraint: str, sql: str, *params: Any) -> str:
    """Run `sql`, expect `constraint` to reject it; returns the error's detail."""
    with pytest.raises(ForeignKeyViolation) as caught, conn.transaction():
        conn.execute(sql, params)
    assert caught.value.diag.constraint_name == constraint
    return caught.value.diag.message_detail or ""


def test_every_unique_key_of_a_tenant_table_leads_with_organisation_id(
    admin: psycopg.Connection[Any],
) -> None:
    rows = admin.execute(
        """SELECT c.conrelid::regclass::text, c.conname,
                  (SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1])
           FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
           WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY(%s)
             AND c.contype IN ('p', 'u')""",
        (list(h.TENANT_TABLES),),
    ).fetchall()
    assert {table for table, _, _ in rows} == set(h.TENANT_TABLES)
    assert [(t, name) for t, name, first in rows if first != "organisation_id"] == []
    indexes = admin.execute(
        """SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY(%s)
             AND i.indisunique
             AND (SELECT a.attname FROM pg_attribute a
                  WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0])
                 IS DISTINCT FROM 'organisation_id'""",
        (list(h.TENANT_TABLES),),
    ).fetchall()
    assert indexes == []


def test_every_foreign_key_between_tenant_tables_carries_organisation_id(
    admin: psycopg.Connection[Any],
) -> None:
    rows = admin.execute(
        """SELECT c.conname,
                  (SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
                  (SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = c.confrelid AND a.attnum = c.confkey[1])
           FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
           WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY(%s)
             AND c.contype = 'f'""",
        (list(h.TENANT_TABLES),),
    ).fetchall()
    assert {name for name, _, _ in rows} == {
        "vechat_conversations_last_message_fkey",
        "vechat_message_edits_message_fkey",
        "vechat_messages_attachment_fkey",
        "vechat_messages_conversation_fkey",
        "vechat_messages_reply_to_fkey",
    }
    assert [r for r in rows if r[1:] != ("organisation_id", "organisation_id")] == []


def test_message_into_conversation_of_other_organisation_is_rejected(
    world: World, admin: psycopg.Connection[Any], app: psycopg.Connection[Any]
) -> None:
    h.act_as(admin, world.a.organisation_id, P1)
    rejected(
        admin,
        "vechat_messages_conversation_fkey",
        """INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,
                                        receiver_id, receiver_type, message)
           VALUES (%s, %s, 11, 'personnel', 12, 'client', 'x')""",
        world.a.organisation_id,
        world.b.conversation_id,
    )
    # The application role does not even get as far as the key: the insert policy wants a
    # conversation of its own organisation between sender and receiver.
    h.act_as(app, world.a.organisation_id, P1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        h.insert_message(app, world.a.organisation_id, world.b.conversation_id, P1, C1, "x")


@pytest.mark.parametrize("who", ["superuser", "vechat_app"])
def test_reply_to_message_of_other_organisation_is_rejected_like_a_missing_one(
    world: World,
    admin: psycopg.Connection[Any],
    app: psycopg.Connection[Any],
    who: str,
) -> None:
    conn = admin if who == "superuser" else app
    a = world.a
    details = []
    for target in (world.b.message_id, 2**62):  # org B's message, a message that never existed
        h.act_as(conn, a.organisation_id, P1)
        with pytest.raises(ForeignKeyViolation) as caught, conn.transaction():
            h.insert_message(
                conn, a.organisation_id, a.conversation_id, P1, C1, "re", reply_to_message_id=target
            )
        assert caught.value.diag.constraint_name == "vechat_messages_reply_to_fkey"
        detail = caught.value.diag.message_detail or ""
        details.append(detail.replace(f", {target})", ", <id>)"))
    # Indistinguishable: the answer names only what the caller sent, nothing of organisation B.
    assert details[0] == details[1]
    assert str(world.b.organisation_id) not in details[0]
    if who == "vechat_app":
        # Under row-level security PostgreSQL leaves key values out of the message altogether.
        assert details[0] == 'Key is not present in table "vechat_messages".'


def test_reply_into_another_conversation_of_same_organisation_is_rejected(
    world: World, admin: psycopg.Connection[Any]
) -> None:
    a = world.a
    other_message = admin.execute(
        "SELECT id FROM vechat_messages WHERE organisation_id = %s AND conversation_id = %s",
        (a.organisation_id, a.other_conversation_id),
    ).fetchone()
    assert other_message is not None
    with pytest.raises(ForeignKeyViolation) as caught:
        h.insert_message(
            admin,
            a.organisation_id,
            a.conversation_id,
            P1,
            C1,
            "re",
            reply_to_message_id=other_message[0],
        )
    assert caught.value.diag.constraint_name == "vechat_messages_reply_to_fkey"


def test_reply_within_the_conversation_is_accepted(
    world: World, app: psycopg.Connection[Any]
) -> None:
    """The counterpart of the rejections above: the same insert with a valid target works."""
    a = world.a
    reply = h.insert_message(
        app, a.organisation_id, a.conversation_id, P1, C1, "re", reply_to_message_id=a.reply_id
    )
    assert reply > 0


@pytest.mark.parametrize("who", ["superuser", "vechat_app"])
def test_attachment_of_other_organisation_is_rejected(
    world: World,
    admin: psycopg.Connection[Any],
    app: psycopg.Connection[Any],
    who: str,
) -> None:
    conn = admin if who == "superuser" else app
    a = world.a
    # Organisation B's attachment was uploaded by a P1 too: same uploader id, other organisation.
    with pytest.raises(ForeignKeyViolation) as caught:
        h.insert_message(
            conn,
            a.organisation_id,
            a.conversation_id,
            P1,
            C1,
            None,
            message_type="file",
            attachment_id=world.b.attachment_id,
        )
    assert caught.value.diag.constraint_name == "vechat_messages_attachment_fkey"
    assert str(world.b.organisation_id) not in (caught.value.diag.message_detail or "")


@pytest.mark.parametrize("who", ["superuser", "vechat_app"])
def test_attachment_uploaded_by_someone_else_is_rejected(
    world: World,
    admin: psycopg.Connection[Any],
    app: psycopg.Connection[Any],
    who: str,
) -> None:
    """C1 can read P1's file (it came in a message to C1) but cannot send it on."""
    conn = admin if who == "superuser" else app
    a = world.a
    if who == "vechat_app":
        h.act_as(app, a.organisation_id, C1)
        visible = app.execute(
            "SELECT count(*) FROM vechat_attachments WHERE id = %s", (a.attachment_id,)
        ).fetchone()
        assert visible == (1,)
    with pytest.raises(ForeignKeyViolation) as caught:
        h.insert_message(
            conn,
            a.organisation_id,
            a.conversation_id,
            C1,
            P1,
            None,
            message_type="file",
            attachment_id=a.attachment_id,
        )
    assert caught.value.diag.constraint_name == "vechat_messages_attachment_fkey"


def test_last_message_of_other_organisation_or_conversation_is_rejected(
    world: World, admin: psycopg.Connection[Any]
) -> None:
    a = world.a
    other_conversation_message = admin.execute(
        "SELECT id FROM vechat_messages WHERE organisation_id = %s AND conversation_id = %s",
        (a.organisation_id, a.other_conversation_id),
    ).fetchone()
    assert other_conversation_message is not None
    for target in (world.b.message_id, other_conversation_message[0]):
        rejected(
            admin,
            "vechat_conversations_last_message_fkey",
            "UPDATE vechat_conversations SET last_message_id = %s "
            "WHERE organisation_id = %s AND id = %s",
            target,
            a.organisation_id,
            a.conversation_id,
        )


def test_edit_history_of_other_organisations_message_is_rejected(
    world: World, admin: psycopg.Connection[Any]
) -> None:
    rejected(
        admin,
        "vechat_message_edits_message_fkey",
        "INSERT INTO vechat_message_edits (organisation_id, message_id, previous_message) "
        "VALUES (%s, %s, 'forged')",
        world.a.organisation_id,
        world.b.message_id,
    )


def test_duplicate_client_id_in_one_organisation_says_nothing_about_another(
    world: World, app: psycopg.Connection[Any]
) -> None:
    """Same sender id, same client_id, two organisations: each send stands on its own."""
    a, b = world.a, world.b

    def send(seed: Seed, client_id: str) -> int:
        return h.insert_message(
            app, seed.organisation_id, seed.conversation_id, P1, C1, "x", client_id=client_id
        )

    assert send(a, "retry-1") != send(b, "retry-1")
    # The seed's "c-1" exists in both organisations; a fresh key in B is free although A has one.
    assert send(b, "only-new-in-b") > 0
    # Idempotent sends find their own organisation's original and nothing else.
    upsert = """
        INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,
                                     receiver_id, receiver_type, message, client_id)
        VALUES (%s, %s, 11, 'personnel', 12, 'client', 'again', %s)
        ON CONFLICT (organisation_id, sender_type, sender_id, client_id) DO NOTHING
        RETURNING id"""
    h.act_as(app, a.organisation_id, P1)
    assert app.execute(upsert, (a.organisation_id, a.conversation_id, "c-1")).fetchall() == []
    assert (
        len(app.execute(upsert, (a.organisation_id, a.conversation_id, "only-new-in-b")).fetchall())
        == 1
    )
    # A true duplicate in A is refused, and under row-level security PostgreSQL shows no key.
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        send(a, "retry-1")
    assert caught.value.diag.message_detail is None
