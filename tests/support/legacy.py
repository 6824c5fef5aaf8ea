"""Legacy VeChat databases as the old NestJS/TypeORM module left them, built from the facts we have.

`build(url, variant)` creates the old tables (both unique-key variants, presence and settings
present or absent, the older composite-key presence, the old guide's `organisation_id` applied by
hand) with the two counting triggers; `seed(url, variant)` fills them with the awkward data seen
in real databases. `rows(url)` reads every legacy table as plain Python values, so that a
snapshot taken before adoption can be compared with the same columns read afterwards.
Also used by bench/adopt.py to build a large legacy database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

TABLES = ("vechat_conversations", "vechat_messages", "vechat_presence", "vechat_user_settings")


@dataclass(frozen=True)
class Variant:
    """Which legacy database to build."""

    unique_key: str = "constraint"  # "constraint": unique_conversation; "index": IDX_… unique index
    presence: str = "id"  # "id", "composite" (the older variant), or "none"
    settings: bool = True
    # Tables the old guide's script was applied to by hand: organisation_id integer DEFAULT 1, with
    # an index and organisation-led unique keys of the DBA's own naming.
    guide: frozenset[str] = field(default_factory=frozenset)
    guide_not_null: frozenset[str] = field(default_factory=frozenset)
    guide_value: int = 1  # the value the DBA backfilled (or corrected to)


PLAIN = Variant()
INDEX_KEY_NO_EXTRAS = Variant(unique_key="index", presence="none", settings=False)
OLDER_PRESENCE = Variant(presence="composite")
HALF_MIGRATED = Variant(
    unique_key="index",
    guide=frozenset({"vechat_conversations", "vechat_messages", "vechat_user_settings"}),
    guide_not_null=frozenset({"vechat_conversations"}),
    guide_value=1,
)

CONVERSATIONS_SQL = """
CREATE TABLE vechat_conversations (
    id serial PRIMARY KEY,
    participant1_id integer NOT NULL,
    participant1_type varchar(20) NOT NULL CHECK (participant1_type IN ('personnel', 'client')),
    participant2_id integer NOT NULL,
    participant2_type varchar(20) NOT NULL CHECK (participant2_type IN ('personnel', 'client')),
    last_message_id integer NULL,
    last_message_at timestamp NULL,
    unread_count_participant1 integer DEFAULT 0,
    unread_count_participant2 integer,
    is_archived_by_participant1 boolean DEFAULT false,
    is_archived_by_participant2 boolean DEFAULT false,
    is_muted_by_participant1 boolean DEFAULT false,
    is_muted_by_participant2 boolean DEFAULT false,
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_vechat_participant1 ON vechat_conversations (participant1_id, participant1_type);
CREATE INDEX idx_vechat_participant2 ON vechat_conversations (participant2_id, participant2_type);
CREATE INDEX idx_vechat_last_message ON vechat_conversations (last_message_at DESC);
"""
UNIQUE_CONSTRAINT_SQL = """
ALTER TABLE vechat_conversations ADD CONSTRAINT unique_conversation
    UNIQUE (participant1_id, participant1_type, participant2_id, participant2_type);
"""
UNIQUE_INDEX_SQL = """
CREATE UNIQUE INDEX "IDX_vechat_conversations_participants" ON vechat_conversations
    (participant1_id, participant1_type, participant2_id, participant2_type);
"""
MESSAGES_SQL = """
CREATE TABLE vechat_messages (
    id serial PRIMARY KEY,
    sender_id integer NOT NULL,
    sender_type varchar(20) NOT NULL CHECK (sender_type IN ('personnel', 'client')),
    receiver_id integer NOT NULL,
    receiver_type varchar(20) NOT NULL CHECK (receiver_type IN ('personnel', 'client')),
    message text NULL,
    message_type varchar(20) DEFAULT 'text'
        CHECK (message_type IN ('text', 'image', 'file', 'video', 'voice', 'audio', 'location')),
    file_url varchar(500),
    file_name varchar(255),
    file_size bigint,
    file_type varchar(100),
    reply_to_message_id integer REFERENCES vechat_messages (id) ON DELETE SET NULL,
    is_read boolean DEFAULT false,
    read_at timestamp,
    is_delivered boolean DEFAULT false,
    delivered_at timestamp,
    is_deleted_by_sender boolean DEFAULT false,
    is_deleted_by_receiver boolean DEFAULT false,
    is_edited boolean DEFAULT false,
    edited_at timestamp,
    original_message text,
    location_latitude numeric(10, 8),
    location_longitude numeric(11, 8),
    location_accuracy numeric(10, 2),
    audio_duration integer,
    audio_waveform text,
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT check_delivered_before_read
        CHECK (delivered_at IS NULL OR read_at IS NULL OR delivered_at <= read_at),
    CONSTRAINT check_edited_date CHECK (edited_at IS NULL OR edited_at >= created_at)
);
ALTER TABLE vechat_conversations ADD CONSTRAINT fk_vechat_last_message
    FOREIGN KEY (last_message_id) REFERENCES vechat_messages (id) ON DELETE SET NULL;
CREATE INDEX idx_vechat_sender ON vechat_messages (sender_id, sender_type);
CREATE INDEX idx_vechat_receiver ON vechat_messages (receiver_id, receiver_type);
CREATE INDEX idx_vechat_conversation
    ON vechat_messages (sender_id, sender_type, receiver_id, receiver_type, created_at);
CREATE INDEX idx_vechat_created_at ON vechat_messages (created_at DESC);
CREATE INDEX idx_vechat_unread ON vechat_messages (receiver_id, receiver_type, is_read)
    WHERE is_read = false;
CREATE INDEX idx_vechat_message_type ON vechat_messages (message_type);
CREATE INDEX idx_vechat_reply_to ON vechat_messages (reply_to_message_id);
CREATE INDEX idx_vechat_deleted ON vechat_messages (is_deleted_by_sender, is_deleted_by_receiver);
CREATE INDEX idx_vechat_delivered ON vechat_messages (is_delivered);
CREATE INDEX idx_vechat_read_at ON vechat_messages (read_at);
"""
# The old module's triggers: upsert the pair's conversation and count, uncount on read. The
# application incremented the counter too, which is why legacy counters are often double.
TRIGGERS_SQL = """
CREATE FUNCTION vechat_update_conversation_after_message_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first_id integer; first_type varchar; second_id integer; second_type varchar;
    receiver_is_first boolean;
BEGIN
    IF (NEW.sender_id, NEW.sender_type) < (NEW.receiver_id, NEW.receiver_type) THEN
        first_id := NEW.sender_id; first_type := NEW.sender_type;
        second_id := NEW.receiver_id; second_type := NEW.receiver_type;
    ELSE
        first_id := NEW.receiver_id; first_type := NEW.receiver_type;
        second_id := NEW.sender_id; second_type := NEW.sender_type;
    END IF;
    receiver_is_first := (NEW.receiver_id, NEW.receiver_type) = (first_id, first_type);
    INSERT INTO vechat_conversations AS c
        (participant1_id, participant1_type, participant2_id, participant2_type,
         last_message_id, last_message_at, unread_count_participant1, unread_count_participant2)
    VALUES (first_id, first_type, second_id, second_type, NEW.id, NEW.created_at,
            CASE WHEN receiver_is_first THEN 1 ELSE 0 END,
            CASE WHEN receiver_is_first THEN 0 ELSE 1 END)
    ON CONFLICT (participant1_id, participant1_type, participant2_id, participant2_type)
    DO UPDATE SET last_message_id = NEW.id, last_message_at = NEW.created_at,
        unread_count_participant1 = coalesce(c.unread_count_participant1, 0)
            + CASE WHEN receiver_is_first THEN 1 ELSE 0 END,
        unread_count_participant2 = coalesce(c.unread_count_participant2, 0)
            + CASE WHEN receiver_is_first THEN 0 ELSE 1 END;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_vechat_update_conversation_after_message_insert
    AFTER INSERT ON vechat_messages
    FOR EACH ROW EXECUTE FUNCTION vechat_update_conversation_after_message_insert();

CREATE FUNCTION vechat_update_conversation_after_message_read() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.is_read AND NOT coalesce(OLD.is_read, false) THEN
        UPDATE vechat_conversations c SET
            unread_count_participant1 = CASE WHEN (c.participant1_id, c.participant1_type)
                = (NEW.receiver_id, NEW.receiver_type)
                THEN greatest(coalesce(c.unread_count_participant1, 0) - 1, 0)
                ELSE c.unread_count_participant1 END,
            unread_count_participant2 = CASE WHEN (c.participant2_id, c.participant2_type)
                = (NEW.receiver_id, NEW.receiver_type)
                THEN greatest(coalesce(c.unread_count_participant2, 0) - 1, 0)
                ELSE c.unread_count_participant2 END
        WHERE (c.participant1_id, c.participant1_type, c.participant2_id, c.participant2_type)
              IN ((NEW.sender_id, NEW.sender_type, NEW.receiver_id, NEW.receiver_type),
                  (NEW.receiver_id, NEW.receiver_type, NEW.sender_id, NEW.sender_type));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_vechat_update_conversation_after_message_read
    AFTER UPDATE OF is_read ON vechat_messages
    FOR EACH ROW EXECUTE FUNCTION vechat_update_conversation_after_message_read();
"""
PRESENCE_SQL = """
CREATE TABLE vechat_presence (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    user_type varchar(20) NOT NULL,
    status varchar(20) DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'away', 'busy')),
    last_seen timestamp,
    connected_at timestamp,
    connection_info text,
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX "IDX_vechat_presence_user" ON vechat_presence (user_id, user_type);
"""
PRESENCE_COMPOSITE_SQL = """
CREATE TABLE vechat_presence (
    user_id integer NOT NULL,
    user_type varchar(20) NOT NULL,
    status varchar(20) DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'away', 'busy')),
    last_seen timestamp,
    connected_at timestamp,
    connection_info json,
    socket_id varchar(100),
    device_type varchar(50),
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, user_type)
);
"""
SETTINGS_SQL = """
CREATE TABLE vechat_user_settings (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    user_type varchar(20) NOT NULL,
    email_notifications boolean DEFAULT true,
    push_notifications boolean DEFAULT true,
    sound_notifications boolean DEFAULT true,
    theme varchar(20) DEFAULT 'light',
    font_size varchar(20) DEFAULT 'medium',
    show_online_status boolean DEFAULT true,
    show_read_receipts boolean DEFAULT true,
    custom_settings json,
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX "IDX_vechat_user_settings_user" ON vechat_user_settings (user_id, user_type);
"""
# The old deployment guide's script, as one DBA wrote it: organisation_id, its index, and the
# pair/user keys replaced by organisation-led ones under names of their own.
GUIDE_SQL = {
    "vechat_conversations": """
ALTER TABLE vechat_conversations ADD COLUMN organisation_id integer DEFAULT 1;
CREATE INDEX idx_conv_organisation ON vechat_conversations (organisation_id);
DROP INDEX IF EXISTS "IDX_vechat_conversations_participants";
ALTER TABLE vechat_conversations DROP CONSTRAINT IF EXISTS unique_conversation;
CREATE UNIQUE INDEX uq_conv_org_participants ON vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type);
""",
    "vechat_messages": """
ALTER TABLE vechat_messages ADD COLUMN organisation_id integer DEFAULT 1;
CREATE INDEX idx_msg_organisation ON vechat_messages (organisation_id);
""",
    "vechat_presence": """
ALTER TABLE vechat_presence ADD COLUMN organisation_id integer DEFAULT 1;
DROP INDEX IF EXISTS "IDX_vechat_presence_user";
CREATE UNIQUE INDEX uq_presence_org_user ON vechat_presence (organisation_id, user_id, user_type);
""",
    "vechat_user_settings": """
ALTER TABLE vechat_user_settings ADD COLUMN organisation_id integer DEFAULT 1;
DROP INDEX IF EXISTS "IDX_vechat_user_settings_user";
CREATE UNIQUE INDEX vechat_settings_org_user_uidx ON vechat_user_settings
    (organisation_id, user_id, user_type);
""",
}


def build(url: str, variant: Variant = PLAIN) -> None:
    """Create the legacy tables and triggers of `variant` (empty)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(CONVERSATIONS_SQL.encode())
        conn.execute(
            (
                UNIQUE_CONSTRAINT_SQL if variant.unique_key == "constraint" else UNIQUE_INDEX_SQL
            ).encode()
        )
        conn.execute(MESSAGES_SQL.encode())
        conn.execute(TRIGGERS_SQL.encode())
        if variant.presence == "id":
            conn.execute(PRESENCE_SQL.encode())
        elif variant.presence == "composite":
            conn.execute(PRESENCE_COMPOSITE_SQL.encode())
        if variant.settings:
            conn.execute(SETTINGS_SQL.encode())


def apply_guide(url: str, variant: Variant) -> None:
    """The old guide's script on the tables of `variant.guide`, as a DBA ran it by hand."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for table in variant.guide:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
                continue
            conn.execute(GUIDE_SQL[table].encode())
            # The DBA backfilled most rows; a few were written by the old app afterwards without it.
            key = "user_id" if table == "vechat_presence" else "id"
            conn.execute(
                f"UPDATE {table} SET organisation_id = %s WHERE mod({key}, 4) <> 0",
                (variant.guide_value,),
            )
            conn.execute(f"UPDATE {table} SET organisation_id = NULL WHERE mod({key}, 4) = 0")
            if table in variant.guide_not_null:
                conn.execute(
                    f"UPDATE {table} SET organisation_id = %s WHERE organisation_id IS NULL",
                    (variant.guide_value,),
                )
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN organisation_id SET NOT NULL")


# Users: personnel 5 and client 5 share an id; personnel 7, client 9, personnel 11, client 12.
# Conversation 1: client 5 / personnel 5; 2: personnel 5 / personnel 7; 3: client 9 / personnel 11
# (empty, counters NULL). Messages of the pairs personnel 7 / client 12 and personnel 5 / client 9
# have no conversation row (orphans).
SEED_SQL = """
INSERT INTO vechat_conversations (id, participant1_id, participant1_type, participant2_id,
    participant2_type, last_message_id, last_message_at, unread_count_participant1,
    unread_count_participant2, is_archived_by_participant1, is_muted_by_participant2,
    created_at, updated_at) VALUES
 (1, 5, 'client', 5, 'personnel', NULL, '2025-03-01 10:06:00', 9, NULL, false, true,
  '2025-03-01 09:59:00', '2025-03-01 10:06:00'),
 (2, 5, 'personnel', 7, 'personnel', NULL, '2025-03-02 08:30:00', 4, 7, true, false,
  '2025-03-02 08:00:00', '2025-03-02 08:30:00'),
 (3, 9, 'client', 11, 'personnel', NULL, NULL, NULL, NULL, false, false,
  '2025-03-03 12:00:00', NULL);
SELECT setval('vechat_conversations_id_seq', 3);

INSERT INTO vechat_messages (id, sender_id, sender_type, receiver_id, receiver_type, message,
    message_type, file_url, file_name, file_size, file_type, reply_to_message_id, is_read, read_at,
    is_delivered, delivered_at, is_deleted_by_sender, is_deleted_by_receiver, is_edited,
    edited_at, original_message, location_latitude, location_longitude, location_accuracy,
    audio_duration, audio_waveform, created_at, updated_at) VALUES
 (1, 5, 'client', 5, 'personnel', 'Bonjour, ma commande ?', 'text', NULL, NULL, NULL, NULL, NULL,
  true, '2025-03-01 10:01:00', true, '2025-03-01 10:00:30', false, false, false, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, '2025-03-01 10:00:00', '2025-03-01 10:01:00'),
 (2, 5, 'personnel', 5, 'client', 'Elle part demain', 'text', NULL, NULL, NULL, NULL, 1,
  false, NULL, true, '2025-03-01 10:02:30', false, false, true, '2025-03-01 10:03:00',
  'Elle part aujourd''hui', NULL, NULL, NULL, NULL, NULL, '2025-03-01 10:02:00',
  '2025-03-01 10:03:00'),
 (3, 5, 'personnel', 5, 'client', NULL, 'voice', '/uploads/v1.ogg', 'v1.ogg', 20480, 'audio/ogg',
  2, false, NULL, false, NULL, false, false, false, NULL, NULL, NULL, NULL, NULL, 7,
  '[0.1,0.5,0.9]', '2025-03-01 10:04:00', '2025-03-01 10:04:00'),
 (4, 5, 'client', 5, 'personnel', NULL, 'location', NULL, NULL, NULL, NULL, 3, NULL, NULL, NULL,
  NULL, false, true, false, NULL, NULL, 0, 0, 0, NULL, NULL, '2025-03-01 10:05:00', NULL),
 (5, 5, 'personnel', 5, 'client', 'un plan', 'image', '/uploads/p.png', 'p.png', 1024,
  'image/png', NULL, false, NULL, false, NULL, true, false, false, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, '2025-03-01 10:06:00', '2025-03-01 10:06:00'),
 (6, 7, 'personnel', 5, 'personnel', 'réunion à 9h ?', 'text', NULL, NULL, NULL, NULL, NULL,
  false, NULL, false, NULL, false, false, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2025-03-02 08:00:00', '2025-03-02 08:00:00'),
 (7, 5, 'personnel', 7, 'personnel', 'ok', 'text', NULL, NULL, NULL, NULL, 6, true,
  '2025-03-02 08:20:00', true, '2025-03-02 08:20:00', false, false, false, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, '2025-03-02 08:10:00', '2025-03-02 08:10:00'),
 (8, 7, 'personnel', 12, 'client', 'Votre devis', 'file', '/uploads/d.pdf', 'devis.pdf', 99999,
  'application/pdf', NULL, false, NULL, false, NULL, false, false, false, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, '2025-03-04 14:00:00', '2025-03-04 14:00:00'),
 (9, 12, 'client', 7, 'personnel', 'Merci !', 'text', NULL, NULL, NULL, NULL, 8, false, NULL,
  false, NULL, false, false, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2025-03-04 14:05:00', '2025-03-04 14:05:00'),
 (10, 9, 'client', 5, 'personnel', 'Allô ?', 'text', NULL, NULL, NULL, NULL, NULL, false, NULL,
  false, NULL, false, false, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2025-03-05 16:00:00', '2025-03-05 16:00:00');
SELECT setval('vechat_messages_id_seq', 10);
"""
# Conversation 2's last message was deleted (the old module's ON DELETE SET NULL): message 11.
SEED_DELETED_LAST_SQL = """
INSERT INTO vechat_messages (id, sender_id, sender_type, receiver_id, receiver_type, message,
    created_at) VALUES (11, 7, 'personnel', 5, 'personnel', 'oups', '2025-03-02 08:30:00');
UPDATE vechat_conversations SET last_message_id = 11 WHERE id = 2;
UPDATE vechat_conversations SET last_message_id = 5 WHERE id = 1;
"""
SEED_PRESENCE_SQL = """
INSERT INTO vechat_presence (user_id, user_type, status, last_seen, connected_at, connection_info,
    created_at, updated_at) VALUES
 (5, 'personnel', 'online', '2025-03-05 16:01:00', '2025-03-05 15:00:00', '{"ua": "Firefox"}',
  '2025-01-01 00:00:00', '2025-03-05 16:01:00'),
 (5, 'client', 'offline', '2025-03-01 10:07:00', NULL, NULL, '2025-01-01 00:00:00', NULL),
 (7, 'personnel', 'busy', NULL, NULL, {free_text}, '2025-01-01 00:00:00', NULL);
"""
SEED_SETTINGS_SQL = """
INSERT INTO vechat_user_settings (user_id, user_type, email_notifications, theme, font_size,
    show_online_status, show_read_receipts, custom_settings, created_at, updated_at) VALUES
 (5, 'personnel', false, 'dark', 'large', false, true, '{"lang": "fr", "sig": "— M."}',
  '2025-01-02 00:00:00', '2025-01-03 00:00:00'),
 (5, 'client', true, 'light', 'medium', true, false, NULL, '2025-01-02 00:00:00', NULL),
 (11, 'personnel', NULL, 'auto', 'small', true, true, '{}', '2025-01-02 00:00:00', NULL);
"""


def seed(url: str, variant: Variant = PLAIN) -> None:
    """The awkward data, with the triggers off (the rows are what the old module left)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(SEED_SQL.encode())
        conn.execute(SEED_DELETED_LAST_SQL.encode())
        conn.execute("SET LOCAL session_replication_role = origin")  # ON DELETE SET NULL fires
        conn.execute("DELETE FROM vechat_messages WHERE id = 11")
        conn.execute("SET LOCAL session_replication_role = replica")
        if variant.presence != "none":
            # Free text where the column is text; where it is json, the old module stored JSON.
            free_text = "'legacy free text'" if variant.presence == "id" else "'[1, 2]'"
            conn.execute(SEED_PRESENCE_SQL.replace("{free_text}", free_text).encode())
            if variant.presence == "composite":
                conn.execute(
                    "UPDATE vechat_presence SET socket_id = 'sock-' || user_id, "
                    "device_type = 'web' WHERE user_type = 'personnel'"
                )
        if variant.settings:
            conn.execute(SEED_SETTINGS_SQL.encode())


def create(url: str, variant: Variant = PLAIN) -> None:
    """A legacy database of `variant`, seeded, with the guide applied where it says."""
    build(url, variant)
    seed(url, variant)
    if variant.guide:
        apply_guide(url, variant)


# --- reading rows back ---------------------------------------------------------------------------

LEGACY_COLUMNS: dict[str, tuple[str, ...]] = {
    "vechat_conversations": (
        "id",
        "participant1_id",
        "participant1_type",
        "participant2_id",
        "participant2_type",
        "last_message_id",
        "last_message_at",
        "is_archived_by_participant1",
        "is_archived_by_participant2",
        "is_muted_by_participant1",
        "is_muted_by_participant2",
        "created_at",
        "updated_at",
    ),
    "vechat_messages": (
        "id",
        "sender_id",
        "sender_type",
        "receiver_id",
        "receiver_type",
        "message",
        "message_type",
        "file_url",
        "file_name",
        "file_size",
        "file_type",
        "reply_to_message_id",
        "is_read",
        "read_at",
        "is_delivered",
        "delivered_at",
        "is_deleted_by_sender",
        "is_deleted_by_receiver",
        "is_edited",
        "edited_at",
        "original_message",
        "location_latitude",
        "location_longitude",
        "location_accuracy",
        "audio_duration",
        "audio_waveform",
        "created_at",
        "updated_at",
    ),
    "vechat_presence": (
        "user_id",
        "user_type",
        "status",
        "last_seen",
        "connected_at",
        "connection_info",
        "created_at",
        "updated_at",
    ),
    "vechat_user_settings": (
        "id",
        "user_id",
        "user_type",
        "email_notifications",
        "push_notifications",
        "sound_notifications",
        "theme",
        "font_size",
        "show_online_status",
        "show_read_receipts",
        "custom_settings",
        "created_at",
        "updated_at",
    ),
}
"""The columns every legacy database has (unread counters left out: adoption recounts them)."""


def _plain(value: Any) -> Any:
    """A value as it compares across the upgrade: naive timestamps are UTC, JSON is parsed."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def rows(
    url: str, schema: str = "public", extra: dict[str, tuple[str, ...]] | None = None
) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row of every legacy table present, keyed by id (presence by user), as plain values.

    Read as the superuser the tests connect as, so row-level security hides nothing.
    """
    found: dict[str, dict[Any, dict[str, Any]]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for table, columns in LEGACY_COLUMNS.items():
            columns = columns + (extra or {}).get(table, ())
            present = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
            if present == (None,):
                continue
            listed = ", ".join(columns)
            found[table] = {}
            for record in conn.execute(f"SELECT {listed} FROM {schema}.{table}").fetchall():
                values = {c: _plain(v) for c, v in zip(columns, record, strict=True)}
                key = (
                    values.get("id")
                    if table != "vechat_presence"
                    else (values["user_type"], values["user_id"])
                )
                found[table][key] = values
    return found
