"""Helpers for the database tests: a schema-at-head database, tenant contexts, seed data.

Seeding is done as the superuser (row-level security never applies to it, triggers still run);
the tests then act as `vechat_app`, the role the API logs in as, in a transaction that sets the
tenant context exactly like `vechat_rls.db.tenant` does (`vechat.enter` with a token signed for the
connection, with the suite's key).

The message triggers are SECURITY DEFINER (owner `vechat_owner`, bound by forced row-level
security), so even the superuser inserts and edits messages under the sender's context:
`insert_message` sets it. Bulk loads use `session_replication_role = replica` instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.support.fixtures import APP_PASSWORD, migrate_to_head
from tests.support.postgres import TestPostgres
from vechat_rls.db import context as signed_context
from vechat_rls.identity import Identity

# Every tenant table of the schema. The isolation matrix and the fail-closed tests assert that the
# catalog holds exactly these, so a new table cannot arrive without its rows in the matrix.
TENANT_TABLES: tuple[str, ...] = (
    "vechat_attachments",
    "vechat_contacts",
    "vechat_conversations",
    "vechat_event_cursors",
    "vechat_events",
    "vechat_message_edits",
    "vechat_messages",
    "vechat_presence",
    "vechat_presence_connections",
    "vechat_rate_limits",
    "vechat_user_settings",
)

TENANT_TABLES_SQL = r"""
SELECT c.relname::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relname LIKE 'vechat\_%' AND c.relkind IN ('r', 'p')
ORDER BY 1
"""

# Organisation ids handed out to test modules, so that modules sharing one database never see each
# other's rows. A different start per run and process keeps leftovers of a run out of the next.
_organisations = itertools.count(1_000 + (os.getpid() % 1_000) * 1_000)


def new_organisation_ids(count: int = 1) -> list[int]:
    return [next(_organisations) for _ in range(count)]


def purge_organisations(admin_url: str, organisation_ids: Sequence[int]) -> None:
    """Delete every row of these organisations from every `public.vechat_*` table (as the
    superuser, with triggers and foreign-key checks off: all rows of the organisations go
    together, so nothing is left dangling)."""
    with psycopg.connect(admin_url) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        for (table,) in conn.execute(TENANT_TABLES_SQL).fetchall():
            conn.execute(
                f"DELETE FROM public.{table} WHERE organisation_id = ANY(%s)",
                (list(organisation_ids),),
            )


@contextmanager
def organisations(postgres: TestPostgres, database: str, count: int = 1) -> Iterator[list[int]]:
    """Fresh organisation ids whose rows are all deleted afterwards."""
    ids = new_organisation_ids(count)
    try:
        yield ids
    finally:
        purge_organisations(postgres.admin_url(database), ids)


# --------------------------------------------------------------------------------------------
# Databases


@contextmanager
def schema_database(postgres: TestPostgres, prefix: str = "t") -> Iterator[str]:
    """A new database at head, dropped afterwards."""
    name = postgres.create_database(prefix)
    try:
        migrate_to_head(postgres.admin_url(name))
        yield name
    finally:
        postgres.drop_database(name)


# --------------------------------------------------------------------------------------------
# Who acts


@dataclass(frozen=True)
class User:
    """A chat user of some organisation (the organisation is chosen when acting)."""

    user_id: int
    user_type: str
    role: str | None = None

    def __str__(self) -> str:
        return f"{self.user_type}:{self.user_id}"


def context_settings(
    organisation_id: int | None, user: User | None, *, empty: bool = False
) -> Mapping[str, str]:
    """The transaction-local settings of an actor; `empty` sets all of them to ''."""
    names = ("vechat.organisation_id", "vechat.user_id", "vechat.user_type", "vechat.role")
    if empty:
        return dict.fromkeys(names, "")
    values: dict[str, str] = {}
    if organisation_id is not None:
        values["vechat.organisation_id"] = str(organisation_id)
    if user is not None:
        values["vechat.user_id"] = str(user.user_id)
        values["vechat.user_type"] = user.user_type
        values["vechat.role"] = user.role or ""  # never inherit an earlier actor's role
    return values


def set_context(conn: psycopg.Connection[Any], settings: Mapping[str, str]) -> None:
    """Inside an open transaction: set the tenant context, transaction-locally."""
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


BACKEND_SQL = (
    "SELECT pg_backend_pid(), (extract(epoch FROM backend_start) * 1000000)::bigint "
    "FROM pg_stat_activity WHERE pid = pg_backend_pid()"
)


def backend_of(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(pid, backend start in µs), as the login sees it (not a role it switched to: a role without
    the login's privileges reads another role's backend start as NULL)."""
    switched = conn.execute("SELECT current_user <> session_user, current_user").fetchone()
    assert switched is not None
    scope = "" if conn.autocommit else "LOCAL "
    if switched[0]:
        conn.execute(f"SET {scope}ROLE NONE")
    row = conn.execute(BACKEND_SQL).fetchone()
    if switched[0]:
        conn.execute(f'SET {scope}ROLE "{switched[1]}"')
    assert row is not None and row[1] is not None
    return int(row[0]), int(row[1])


def signed_token(
    conn: psycopg.Connection[Any], organisation_id: int, user: User, **options: Any
) -> str:
    """A context token for this connection, signed with the test key (the service's way)."""
    pid, start = backend_of(conn)
    return signed_context.sign(identity_of(organisation_id, user), pid, start, **options)


def identity_of(organisation_id: int, user: User) -> Identity:
    """`user` of the organisation, as the service's identity (what a token names)."""
    return Identity(
        organisation_id=organisation_id,
        user_id=user.user_id,
        user_type="personnel" if user.user_type == "personnel" else "client",
        role=user.role,
    )


def act_as(
    conn: psycopg.Connection[Any], organisation_id: int | None, user: User | None = None
) -> None:
    """Inside an open transaction: act for `user` of the organisation with a signed context;
    without a user, only the settings (which the policies ignore: no context)."""
    if organisation_id is None or user is None:
        set_context(conn, context_settings(organisation_id, user))
        return
    conn.execute("SELECT vechat.enter(%s)", (signed_token(conn, organisation_id, user),))


def app_connect(postgres: TestPostgres, database: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(postgres.app_url(database, password=APP_PASSWORD), **kwargs)


def admin_connect(postgres: TestPostgres, database: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(postgres.admin_url(database), **kwargs)


def sqlstate_of(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


# --------------------------------------------------------------------------------------------
# Seed data (as the superuser)

# A new row of P1 in organisation %(a)s, one per tenant table (the isolation matrix and the
# fail-closed tests); %(conversation_id)s and %(message_id)s are P1-C1 ones from the seed.
OWNER_ROW_SQL = {
    "vechat_attachments": """
        INSERT INTO vechat_attachments (organisation_id, uploader_id, uploader_type, file_name,
                                        file_type, file_size, sha256, data)
        VALUES (%(a)s, 11, 'personnel', 'b.pdf', 'application/pdf', 2, repeat('0', 64),
                '\\x0102')""",
    "vechat_contacts": """
        INSERT INTO vechat_contacts (organisation_id, user_id, user_type, display_name)
        VALUES (%(a)s, 11, 'personnel', 'alice')""",
    "vechat_conversations": """
        INSERT INTO vechat_conversations (organisation_id, participant1_id, participant1_type,
                                          participant2_id, participant2_type)
        VALUES (%(a)s, 11, 'personnel', 14, 'client')""",
    "vechat_event_cursors": """
        INSERT INTO vechat_event_cursors (organisation_id, user_id, user_type, last_seq)
        VALUES (%(a)s, 11, 'personnel', 1000)""",
    "vechat_events": """
        INSERT INTO vechat_events (organisation_id, recipient_id, recipient_type, seq, event_type,
                                   conversation_id)
        VALUES (%(a)s, 11, 'personnel', 1000, 'conversation.updated', %(conversation_id)s)""",
    "vechat_message_edits": """
        INSERT INTO vechat_message_edits (organisation_id, message_id, previous_message)
        VALUES (%(a)s, %(message_id)s, 'forged')""",
    "vechat_messages": """
        INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id, sender_type,
                                     receiver_id, receiver_type, message)
        VALUES (%(a)s, %(conversation_id)s, 11, 'personnel', 12, 'client', 'new')""",
    "vechat_presence": """
        INSERT INTO vechat_presence (organisation_id, user_id, user_type, status)
        VALUES (%(a)s, 11, 'personnel', 'online')""",
    "vechat_presence_connections": """
        INSERT INTO vechat_presence_connections (organisation_id, user_id, user_type, server_id,
                                                 expires_at)
        VALUES (%(a)s, 11, 'personnel', 'new', now() + interval '1 minute')""",
    "vechat_rate_limits": """
        INSERT INTO vechat_rate_limits (organisation_id, user_type, user_id, action, window_start,
                                        hits)
        VALUES (%(a)s, 'personnel', 11, 'upload', now(), 1)""",
    "vechat_user_settings": """
        INSERT INTO vechat_user_settings (organisation_id, user_id, user_type, theme)
        VALUES (%(a)s, 11, 'personnel', 'dark')""",
}

# P1 already has the one row these tables allow per user: what to delete (as the superuser, in a
# transaction that is rolled back) before inserting OWNER_ROW_SQL.
MAKE_ROOM_FOR_OWNER_SQL = {
    "vechat_contacts": "DELETE FROM vechat_contacts WHERE organisation_id = %(a)s "
    "AND user_type = 'personnel' AND user_id = 11",
    "vechat_presence": "DELETE FROM vechat_presence WHERE organisation_id = %(a)s "
    "AND user_type = 'personnel' AND user_id = 11",
    "vechat_user_settings": "DELETE FROM vechat_user_settings WHERE organisation_id = %(a)s "
    "AND user_type = 'personnel' AND user_id = 11",
}


P1 = User(11, "personnel")  # alice: staff
C1 = User(12, "client")  # bob: alice's customer
P2 = User(13, "personnel")  # carol: other staff
C2 = User(14, "client")  # dave: another customer
ADMIN = User(15, "personnel", "admin")  # erin: the organisation's chat admin
NEW_P = User(21, "personnel")  # frank: no rows of his own yet
NEW_C = User(22, "client")  # grace: no rows of her own yet


@dataclass(frozen=True)
class Seed:
    """Ids of what `seed_organisation` created in one organisation."""

    organisation_id: int
    conversation_id: int  # P1 <-> C1
    other_conversation_id: int  # P2 <-> C2
    message_id: int  # P1 -> C1, text, edited once
    file_message_id: int  # P1 -> C1, carries attachment_id
    reply_id: int  # C1 -> P1, a reply to message_id
    attachment_id: int  # uploaded by P1
    edit_id: int  # the history row of message_id
    first_event_seq: int  # P1's first event


def create_conversation(
    conn: psycopg.Connection[Any], organisation_id: int, a: User, b: User
) -> int:
    """A conversation between `a` and `b`, pair stored in normalised order; returns its id."""
    first, second = sorted((a, b), key=lambda u: (u.user_id, u.user_type))
    row = conn.execute(
        """INSERT INTO vechat_conversations (organisation_id, participant1_id, participant1_type,
                                             participant2_id, participant2_type)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (organisation_id, first.user_id, first.user_type, second.user_id, second.user_type),
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_message(
    conn: psycopg.Connection[Any],
    organisation_id: int,
    conversation_id: int,
    sender: User,
    receiver: User,
    text: str | None = "hello",
    *,
    as_sender: bool = True,
    **columns: Any,
) -> int:
    """Insert one message; returns its id.

    With `as_sender` (the default) the transaction first takes the sender's context, which the
    SECURITY DEFINER message triggers need to append events (see the module docstring); it stays
    set afterwards. `as_sender=False` inserts under whatever context the caller set.
    """
    if as_sender:
        act_as(conn, organisation_id, sender)
    names = [
        "organisation_id",
        "conversation_id",
        "sender_id",
        "sender_type",
        "receiver_id",
        "receiver_type",
        "message",
        *columns,
    ]
    values = [
        organisation_id,
        conversation_id,
        sender.user_id,
        sender.user_type,
        receiver.user_id,
        receiver.user_type,
        text,
        *columns.values(),
    ]
    row = conn.execute(
        f"INSERT INTO vechat_messages ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        values,
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_attachment(
    conn: psycopg.Connection[Any],
    organisation_id: int,
    uploader: User,
    data: bytes = b"%PDF-1",
    file_type: str = "application/pdf",
) -> int:
    """An uploaded file of `uploader`, stored as the attachments API stores it; returns its id."""
    row = conn.execute(
        """INSERT INTO vechat_attachments (organisation_id, uploader_id, uploader_type, file_name,
                                           file_type, file_size, sha256, data)
           VALUES (%s, %s, %s, 'upload.bin', %s, %s, repeat('0', 64), %s)
           RETURNING id""",
        (organisation_id, uploader.user_id, uploader.user_type, file_type, len(data), data),
    ).fetchone()
    assert row is not None
    return int(row[0])


def seed_organisation(conn: psycopg.Connection[Any], organisation_id: int) -> Seed:
    """One organisation's worth of every kind of row, as the superuser.

    What it creates (the isolation matrix counts on exactly this):
    contacts P1, C1, P2, C2, ADMIN; conversations P1-C1 and P2-C2; one attachment of P1; messages
    P1->C1 "hello" (then edited: one history row), P1->C1 file, C1->P1 reply, P2->C2 "other";
    settings of P1 and C1 (their triggers create presence rows for both); connection leases of P1
    (one live, one expired) and C1 (live); rate-limit counters of P1 and C1; and, from the message
    triggers, events: 4 each for P1 and C1, 1 each for P2 and C2, behind 4 cursors.
    The transaction's context is cleared again before returning.
    """
    o = organisation_id
    for user in (P1, C1, P2, C2, ADMIN):
        conn.execute(
            """INSERT INTO vechat_contacts (organisation_id, user_id, user_type, display_name, role)
               VALUES (%s, %s, %s, %s, %s)""",
            (o, user.user_id, user.user_type, f"user {user}", user.role),
        )
    conversation = create_conversation(conn, o, P1, C1)
    other_conversation = create_conversation(conn, o, P2, C2)
    attachment = insert_attachment(conn, o, P1)
    message = insert_message(conn, o, conversation, P1, C1, "hello", client_id="c-1")
    file_message = insert_message(
        conn, o, conversation, P1, C1, None, message_type="file", attachment_id=attachment
    )
    reply = insert_message(conn, o, conversation, C1, P1, "hi", reply_to_message_id=message)
    insert_message(conn, o, other_conversation, P2, C2, "other")
    act_as(conn, o, P1)  # the edit trigger writes history only for the sender
    conn.execute(
        "UPDATE vechat_messages SET message = 'hello!' WHERE organisation_id = %s AND id = %s",
        (o, message),
    )
    set_context(conn, context_settings(None, None, empty=True))
    edit = conn.execute(
        "SELECT id FROM vechat_message_edits WHERE organisation_id = %s AND message_id = %s",
        (o, message),
    ).fetchone()
    assert edit is not None
    for user in (P1, C1):
        # Their trigger creates each user's presence row.
        conn.execute(
            """INSERT INTO vechat_user_settings (organisation_id, user_id, user_type, theme)
               VALUES (%s, %s, %s, 'light')""",
            (o, user.user_id, user.user_type),
        )
        conn.execute(
            """INSERT INTO vechat_rate_limits
                   (organisation_id, user_type, user_id, action, window_start, hits)
               VALUES (%s, %s, %s, 'send', now(), 1)""",
            (o, user.user_type, user.user_id),
        )
    conn.execute(
        """INSERT INTO vechat_presence_connections
               (organisation_id, user_id, user_type, server_id, expires_at)
           VALUES (%s, %s, %s, 'live', now() + interval '1 hour'),
                  (%s, %s, %s, 'dead', now() - interval '1 hour'),
                  (%s, %s, %s, 'live', now() + interval '1 hour')""",
        (o, P1.user_id, P1.user_type, o, P1.user_id, P1.user_type, o, C1.user_id, C1.user_type),
    )
    seq = conn.execute(
        """SELECT min(seq) FROM vechat_events
           WHERE organisation_id = %s AND recipient_type = %s AND recipient_id = %s""",
        (o, P1.user_type, P1.user_id),
    ).fetchone()
    assert seq is not None and seq[0] is not None
    return Seed(
        o,
        conversation,
        other_conversation,
        message,
        file_message,
        reply,
        attachment,
        int(edit[0]),
        int(seq[0]),
    )


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every node of an `EXPLAIN (FORMAT JSON)` plan, init plans and sub plans included."""
    if isinstance(plan, list):
        for item in plan:
            yield from plan_nodes(item)
        return
    if not isinstance(plan, dict):
        return
    if "Plan" in plan:
        yield from plan_nodes(plan["Plan"])
        return
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)
