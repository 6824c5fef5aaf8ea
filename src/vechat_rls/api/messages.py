"""Messages: their API shape; reading, sending, editing, deleting, marking read, searching.

The table keeps the ERP's column names; `message_columns` (`MESSAGE_COLUMNS`) is the one place
that maps them to the API's (`message` → `body`, `voice` → `audio`, `location_*`, `audio_*`,
`file_*` → nested objects, via `message_from_row`). Who sees a message is row-level security
(`vechat_messages_select_participant`: sender and receiver only); what each of them is *shown*
also honours "delete for me" (`is_deleted_by_*`) and a conversation deleted for them
(`hidden_through_message_id_participantN`): `MESSAGE_SHOWN`.

Counters, the last message, un-archiving, edit history and events are written by the triggers in
db/schema/20_message_triggers.sql in the same transaction; nothing here counts. Which column each
participant may change is `vechat.messages_guard`'s rule.

For the realtime layer: `fetch_messages`, `send_message` (also the WebSocket `send`), and
`MessageCreate`. Every function takes a connection already inside the caller's tenant transaction.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from vechat_rls import db
from vechat_rls.api import cursors, ratelimit
from vechat_rls.api.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unprocessable,
)
from vechat_rls.api.participants import Id, Participant, open_conversation
from vechat_rls.api.security import ConnDep, IdentityDep, SettingsDep
from vechat_rls.config import Settings
from vechat_rls.identity import BIGINT_MAX, Identity, User

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_MARK_READ = 1000
MAX_SEARCH_CHARS = 500
BODY_PREVIEW_CHARS = 100
RATE_LIMIT_ACTION = "messages"

MessageType = Literal["text", "image", "file", "video", "audio", "location"]
MessageTypeIn = Literal["text", "image", "file", "video", "audio", "voice", "location"]
"""Accepted on input: `voice` is the legacy spelling of `audio`."""

MEDIA_TYPES: dict[str, str | None] = {
    "image": "image/",
    "video": "video/",
    "audio": "audio/",
    "file": None,
}
"""Attachment-carrying types and the MIME prefix their file must have (`file`: any)."""

PathId = Annotated[int, PathParameter(ge=1, le=BIGINT_MAX, description="a positive integer id")]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="page size (1-200)")]


# --- shapes ------------------------------------------------------------------------------------


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """The file a message carries (download it at `/attachments/{id}`)."""

    id: int
    file_name: str
    file_size: int
    file_type: str


class Location(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A point on Earth; 0 is a valid coordinate. `accuracy` is in metres."""

    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    accuracy: Annotated[float, msgspec.Meta(ge=0, le=99_999_999)] | None = None


class Audio(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A voice note's metadata; the sound itself is the attachment."""

    duration_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)]
    waveform: Annotated[str, msgspec.Meta(max_length=8192)] | None = None


class ReplyTo(msgspec.Struct, frozen=True, kw_only=True):
    """What a reply quotes: the first characters of the original (null once it is deleted)."""

    id: int
    sender: Participant
    body_preview: str | None
    message_type: MessageType


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message as its sender or receiver sees it; a tombstone has `deleted` and no content."""

    id: int
    conversation_id: int
    sender: Participant
    receiver: Participant
    message_type: MessageType
    body: str | None
    attachment: Attachment | None
    location: Location | None
    audio: Audio | None
    reply_to: ReplyTo | None
    client_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    read_at: datetime | None


class MessageCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message to send. Which fields a type needs: `validate_create`."""

    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    message_type: MessageTypeIn = "text"
    body: str | None = None
    attachment_id: Id | None = None
    location: Location | None = None
    audio: Audio | None = None
    reply_to_id: Id | None = None


class PeerMessageCreate(MessageCreate, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /messages`: a message to `receiver`, in their conversation (created on demand)."""

    receiver: Participant


class MessageUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PATCH /messages/{id}`: the new text of a text message."""

    body: str


class MessagesRead(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /messages/read`: messages to mark read (only those the caller received count)."""

    message_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_MARK_READ)]


class Marked(msgspec.Struct, frozen=True, kw_only=True):
    """How many messages went from unread to read."""

    marked: int


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Message]
    next_cursor: str | None


class MessageEdit(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier version: `body` is the text as it was before the edit made at `edited_at`."""

    id: int
    message_id: int
    body: str
    edited_at: datetime


class MessageEditPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MessageEdit]
    next_cursor: str | None


# --- reading -----------------------------------------------------------------------------------

# Who reads: the transaction's user. The realtime hub reads events for several users in one
# query and names each row's recipient instead (realtime/events.py).
CALLER_ID = "(SELECT vechat.current_user_id())"
CALLER_TYPE = "(SELECT vechat.current_user_type())"


# Whether the receiver of message `m` shows read receipts (their settings are private; the flag
# is copied to their presence row, readable in the organisation:
# vechat_presence_select_organisation, db/policies/vechat_presence.sql). vechat.read_events
# computes the same for the hub.
RECEIPTS_SHOWN = """
coalesce((SELECT p.show_read_receipts FROM public.vechat_presence p
          WHERE p.organisation_id = m.organisation_id AND p.user_type = m.receiver_type
            AND p.user_id = m.receiver_id), true)"""


def message_columns(
    viewer_id: str = CALLER_ID,
    viewer_type: str = CALLER_TYPE,
    receipts_shown: str = RECEIPTS_SHOWN,
) -> str:
    """The column → field mapping, over a message `m` and the message it replies to `r`
    (REPLY_JOIN), as the viewer (SQL expressions for their id and type) is shown it.

    The sender sees when the receiver read the message only if the receiver shows read receipts
    (`receipts_shown`, an SQL expression).
    """
    read_at_shown = f"""
CASE WHEN m.read_at IS NULL
          OR NOT (m.sender_id = {viewer_id} AND m.sender_type = {viewer_type})
          OR {receipts_shown}
     THEN m.read_at
END"""
    return f"""
m.id, m.conversation_id, m.sender_id, m.sender_type, m.receiver_id, m.receiver_type,
CASE WHEN m.message_type = 'voice' THEN 'audio' ELSE m.message_type END AS message_type,
m.message AS body,
m.attachment_id, m.file_name, m.file_size, m.file_type,
m.location_latitude::float8 AS latitude, m.location_longitude::float8 AS longitude,
m.location_accuracy::float8 AS accuracy,
m.audio_duration AS duration_s, m.audio_waveform AS waveform,
r.id AS reply_id, r.sender_id AS reply_sender_id, r.sender_type AS reply_sender_type,
CASE WHEN r.message_type = 'voice' THEN 'audio' ELSE r.message_type END AS reply_message_type,
left(r.message, {BODY_PREVIEW_CHARS}) AS reply_body_preview,
m.client_id, m.created_at, m.edited_at, m.deleted_at IS NOT NULL AS deleted,
{read_at_shown} AS read_at
"""


MESSAGE_COLUMNS = message_columns()

# The replied-to message is in the same conversation (vechat_messages_reply_to_fkey), so whoever
# reads `m` may read `r` too (vechat_messages_select_participant).
REPLY_JOIN = """
LEFT JOIN public.vechat_messages r
    ON r.organisation_id = m.organisation_id AND r.id = m.reply_to_message_id
"""

# The caller is participant 1 of conversation `c` (else, row-level security says, participant 2).
CALLER_IS_PARTICIPANT1 = f"""
(c.participant1_id = {CALLER_ID}
 AND c.participant1_type = {CALLER_TYPE})
"""

# The caller sent message `m` (else, row-level security says, the caller received it).
SENT_BY_CALLER = f"""
(m.sender_id = {CALLER_ID}
 AND m.sender_type = {CALLER_TYPE})
"""

# Message `m` of conversation `c` is shown to the caller: not deleted by them "for me", and newer
# than the point where they deleted the whole conversation for themselves. Tombstones (deleted
# for everyone) are shown, as tombstones.
MESSAGE_SHOWN = f"""
NOT CASE WHEN {SENT_BY_CALLER} THEN m.is_deleted_by_sender ELSE m.is_deleted_by_receiver END
AND m.id > coalesce(CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.hidden_through_message_id_participant1
                         ELSE c.hidden_through_message_id_participant2 END, 0)
"""

# visibility: vechat_messages_select_participant (db/policies/vechat_messages.sql) — only
# messages the caller sent or received, of the caller's organisation.
MESSAGES_BY_ID_SQL = f"""
SELECT {MESSAGE_COLUMNS}
FROM public.vechat_messages m
{REPLY_JOIN}
WHERE m.id = ANY ($1::bigint[])
ORDER BY m.id
"""


def message_from_row(row: db.Record) -> Message:
    """A `Message` from a row of `MESSAGE_COLUMNS`."""
    deleted = bool(row["deleted"])
    attachment = None
    if row["attachment_id"] is not None and not deleted:
        attachment = Attachment(
            id=row["attachment_id"],
            file_name=row["file_name"] or "",
            file_size=row["file_size"] or 0,
            file_type=row["file_type"] or "application/octet-stream",
        )
    location = None
    if row["latitude"] is not None and row["longitude"] is not None:
        location = Location(
            latitude=row["latitude"], longitude=row["longitude"], accuracy=row["accuracy"]
        )
    audio = None
    if row["duration_s"] is not None:
        audio = Audio(duration_s=row["duration_s"], waveform=row["waveform"])
    reply_to = None
    if row["reply_id"] is not None and not deleted:
        reply_to = ReplyTo(
            id=row["reply_id"],
            sender=Participant(user_id=row["reply_sender_id"], user_type=row["reply_sender_type"]),
            body_preview=row["reply_body_preview"],
            message_type=row["reply_message_type"],
        )
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        sender=Participant(user_id=row["sender_id"], user_type=row["sender_type"]),
        receiver=Participant(user_id=row["receiver_id"], user_type=row["receiver_type"]),
        message_type=row["message_type"],
        body=row["body"],
        attachment=attachment,
        location=location,
        audio=audio,
        reply_to=reply_to,
        client_id=row["client_id"],
        created_at=row["created_at"],
        edited_at=row["edited_at"],
        deleted=deleted,
        read_at=row["read_at"],
    )


async def fetch_messages(conn: db.Connection, ids: list[int]) -> list[Message]:
    """The messages `ids` as the transaction's user sees them, in id order; one round trip.

    Row-level security applies: ids of other organisations, or of messages the user neither sent
    nor received, are simply absent. Messages the user deleted "for me" are included (the
    realtime layer announces exactly that deletion with them); lists apply `MESSAGE_SHOWN`.
    """
    if not ids:
        return []
    rows = await conn.fetch(MESSAGES_BY_ID_SQL, ids)
    return [message_from_row(row) for row in rows]


# A page of conversation $1, newest first (DESC) or oldest first (ASC), strictly between the ids
# $2 (exclusive lower bound, `after`) and $3 (exclusive upper bound, `before`); $4 rows.
# The outer LEFT JOIN yields one row with a NULL id when the conversation exists but shows no
# message, and no row at all when it is not the caller's — a 404.
# visibility: vechat_conversations_select_participant, vechat_messages_select_participant.
_PAGE_SQL = """
SELECT c.id AS found_conversation_id, m.*
FROM public.vechat_conversations c
LEFT JOIN LATERAL (
    SELECT {columns}
    FROM public.vechat_messages m
    {reply_join}
    WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
      AND m.id > $2 AND m.id < $3
      AND {shown}
    ORDER BY m.id {direction}
    LIMIT $4
) m ON true
WHERE c.id = $1
ORDER BY m.id
"""
MESSAGES_NEWEST_SQL = _PAGE_SQL.format(
    columns=MESSAGE_COLUMNS, reply_join=REPLY_JOIN, shown=MESSAGE_SHOWN, direction="DESC"
)
MESSAGES_FORWARD_SQL = _PAGE_SQL.format(
    columns=MESSAGE_COLUMNS, reply_join=REPLY_JOIN, shown=MESSAGE_SHOWN, direction="ASC"
)


async def message_page(
    conn: db.Connection,
    conversation_id: int,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> MessagePage | None:
    """A chronological page of the conversation as the caller is shown it; None if not theirs.

    No bounds: the newest `limit` messages; `next_cursor` is then the id to pass as `before` for
    the page before it. With `after` (and maybe `before`): the oldest `limit` messages after it;
    `next_cursor` is then the id to pass as `after`. Ids only grow, so pages neither repeat nor
    skip messages while new ones arrive.
    """
    forward = after is not None
    sql = MESSAGES_FORWARD_SQL if forward else MESSAGES_NEWEST_SQL
    rows = await conn.fetch(sql, conversation_id, after or 0, before or BIGINT_MAX, limit + 1)
    if not rows:
        return None
    rows = [row for row in rows if row["id"] is not None]
    more = len(rows) > limit
    if forward:
        rows = rows[:limit]
        next_cursor = str(rows[-1]["id"]) if more else None
    else:
        rows = rows[-limit:]
        next_cursor = str(rows[0]["id"]) if more else None
    return MessagePage(items=[message_from_row(row) for row in rows], next_cursor=next_cursor)


# Full text over `search_vector` (to_tsvector('simple', message)), newest first, ids below $3.
# Tombstones have no text; MESSAGE_SHOWN drops what the caller deleted for themselves.
# visibility: vechat_messages_select_participant, vechat_conversations_select_participant.
SEARCH_SQL = f"""
SELECT {MESSAGE_COLUMNS}
FROM public.vechat_messages m
JOIN public.vechat_conversations c
    ON c.organisation_id = m.organisation_id AND c.id = m.conversation_id
{REPLY_JOIN}
WHERE m.search_vector @@ websearch_to_tsquery('simple', $1)
  AND m.deleted_at IS NULL
  AND ($2::bigint IS NULL OR m.conversation_id = $2)
  AND m.id < $3
  AND {MESSAGE_SHOWN}
ORDER BY m.id DESC
LIMIT $4
"""

# visibility: vechat_conversations_select_participant (db/policies/vechat_conversations.sql).
CONVERSATION_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM public.vechat_conversations WHERE id = $1)"

SEARCH_CURSOR = "search"


async def search_messages(
    conn: db.Connection,
    q: str,
    *,
    conversation_id: int | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> MessagePage | None:
    """Messages shown to the caller whose text matches `q` (web-search syntax), newest first.

    None when `conversation_id` is given and is not the caller's conversation (404).
    """
    below = cursors.decode(cursor, SEARCH_CURSOR, 1)[0] if cursor else BIGINT_MAX
    rows = await conn.fetch(SEARCH_SQL, q, conversation_id, below, limit + 1)
    if (
        not rows
        and conversation_id is not None
        and not await conn.fetchval(CONVERSATION_EXISTS_SQL, conversation_id)
    ):
        return None
    items = [message_from_row(row) for row in rows[:limit]]
    next_cursor = cursors.encode(SEARCH_CURSOR, items[-1].id) if len(rows) > limit else None
    return MessagePage(items=items, next_cursor=next_cursor)


# --- sending -----------------------------------------------------------------------------------


class _Validated(msgspec.Struct, frozen=True, kw_only=True):
    message_type: MessageType
    body: str | None
    attachment_id: int | None
    location: Location | None
    audio: Audio | None


def check_body_length(body: str, settings: Settings) -> None:
    """`BadRequest` (400, with the field path) for a body over `VECHAT_MAX_MESSAGE_CHARS`."""
    if len(body) > settings.max_message_chars:
        raise BadRequest(
            "request validation failed",
            extra={
                "errors": [
                    {
                        "path": "body",
                        "source": "body",
                        "message": f"Expected `str` of length <= {settings.max_message_chars}",
                    }
                ]
            },
        )


def validate_create(data: MessageCreate, settings: Settings) -> _Validated:
    """The rules of each message type, before any database work.

    * `text`: a non-blank `body`; no attachment, location or audio.
    * `image`, `file`, `video`, `audio` (`voice`): an `attachment_id` (its MIME type is checked
      against the type in the database: image/*, video/*, audio/*, anything for file); `body` is
      an optional caption; `audio` metadata only on `audio`.
    * `location`: a `location`; `body` is an optional caption.

    A body longer than `VECHAT_MAX_MESSAGE_CHARS` is 400 (a value out of range); a rule broken by a
    well-formed body is 422.
    """
    message_type: MessageType = "audio" if data.message_type == "voice" else data.message_type
    body = data.body
    if body is not None:
        check_body_length(body, settings)
    misplaced = []
    if message_type == "text":
        if body is None or not body.strip():
            raise Unprocessable("a text message needs a non-blank body")
        misplaced = ["attachment_id", "location", "audio"]
    elif message_type == "location":
        if data.location is None:
            raise Unprocessable("a location message needs a location")
        misplaced = ["attachment_id", "audio"]
    else:
        if data.attachment_id is None:
            raise Unprocessable(f"a {message_type} message needs an attachment_id")
        misplaced = ["location"] if message_type == "audio" else ["location", "audio"]
    for name in misplaced:
        if getattr(data, name) is not None:
            raise Unprocessable(f"{name} does not belong to a {message_type} message")
    if body is not None and not body.strip() and message_type != "text":
        body = None  # an empty caption is no caption
    return _Validated(
        message_type=message_type,
        body=body,
        attachment_id=data.attachment_id,
        location=data.location,
        audio=data.audio,
    )


# One statement: count the send against the rate limit (api/ratelimit.py's own statement, $1-$2),
# find the conversation and the peer, the attachment and the replied-to message, insert — only if
# all of it holds — and return the new message with a diagnosis of what was missing otherwise.
# `ON CONFLICT … DO NOTHING` on the sender's client_id makes retries idempotent: it waits for a
# concurrent insert of the same client_id and then inserts nothing; `ORIGINAL_BY_CLIENT_ID_SQL`
# (a new snapshot) then finds the original.
# visibility: vechat_conversations_select_participant — the conversation must be the caller's;
# vechat_attachments_select_uploader_or_participant plus the uploader condition below (and the
# key vechat_messages_attachment_fkey) — only the uploader attaches a file;
# vechat_messages_insert_sender — the caller sends only as themselves, to their peer.
SEND_SQL = f"""
WITH rate AS ({ratelimit.HIT_SQL}),
conv AS (
    SELECT c.organisation_id, c.id,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.participant2_id ELSE c.participant1_id END
               AS peer_id,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.participant2_type ELSE c.participant1_type END
               AS peer_type
    FROM public.vechat_conversations c
    WHERE c.id = $3
),
att AS (
    SELECT a.id, a.file_name, a.file_size, a.file_type,
           CASE WHEN $5::text IS NULL THEN true
                ELSE a.file_type LIKE $5::text || '%' END AS fits
    FROM public.vechat_attachments a
    WHERE a.id = $6
      AND a.uploader_id = (SELECT vechat.current_user_id())
      AND a.uploader_type = (SELECT vechat.current_user_type())
),
reply AS (
    -- By id alone (the primary key): with `conversation_id = $3` here a generic plan scanned the
    -- whole conversation. Same conversation is checked where it is used.
    SELECT r.id, r.conversation_id FROM public.vechat_messages r WHERE r.id = $7
),
inserted AS (
    INSERT INTO public.vechat_messages AS m
        (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type,
         message_type, message, attachment_id, file_name, file_size, file_type,
         reply_to_message_id, client_id, location_latitude, location_longitude,
         location_accuracy, audio_duration, audio_waveform)
    SELECT conv.organisation_id, conv.id,
           (SELECT vechat.current_user_id()), (SELECT vechat.current_user_type()),
           conv.peer_id, conv.peer_type,
           $4::text, $8::text, att.id, att.file_name, att.file_size, att.file_type,
           reply.id, $9::text, $10::float8, $11::float8, $12::float8, $13::integer, $14::text
    FROM conv
    CROSS JOIN rate
    LEFT JOIN att ON true
    LEFT JOIN reply ON true
    WHERE rate.hits <= $15
      AND ($6::bigint IS NULL OR att.fits)
      AND ($7::bigint IS NULL OR reply.conversation_id = conv.id)
    ON CONFLICT (organisation_id, sender_type, sender_id, client_id) DO NOTHING
    RETURNING m.*
)
SELECT rate.hits AS rate_hits, rate.reset_in AS rate_reset_in,
       EXISTS (SELECT 1 FROM conv) AS conversation_found,
       (SELECT fits FROM att) AS attachment_fits,
       EXISTS (SELECT 1 FROM reply WHERE reply.conversation_id = $3) AS reply_found,
       {MESSAGE_COLUMNS}
FROM rate
LEFT JOIN inserted m ON true
{REPLY_JOIN}
"""

# visibility: vechat_messages_select_participant — the caller's own sent message.
ORIGINAL_BY_CLIENT_ID_SQL = f"""
SELECT {MESSAGE_COLUMNS}
FROM public.vechat_messages m
{REPLY_JOIN}
WHERE m.sender_id = (SELECT vechat.current_user_id())
  AND m.sender_type = (SELECT vechat.current_user_type())
  AND m.client_id = $1
"""

RATE_WINDOW_S = 60


async def send_message(
    conn: db.Connection,
    identity: Identity,
    conversation_id: int,
    data: MessageCreate,
    settings: Settings,
) -> tuple[Message, bool]:
    """Send `data` into the caller's conversation; returns the message and whether it is new.

    The sender is the transaction's tenant context, which `identity` must be (the realtime layer
    passes the socket's identity and a connection in its tenant transaction).

    One round trip (two when `client_id` repeats an earlier send: then the original message comes
    back with `False`, whatever this request's content). Raises, without writing anything once the
    caller's transaction rolls back:
    `Unprocessable`/`BadRequest` (`validate_create`); `RateLimited` past
    `VECHAT_RATE_LIMIT_PER_MIN` sends per minute; `NotFound` for a conversation, attachment or
    replied-to message the caller may not use — a reply must quote a message *of the same
    conversation*, and one from elsewhere is answered exactly like one that does not exist (404);
    `Unprocessable` for an attachment whose MIME type does not fit the message type; `Conflict`
    when the `client_id` was already used for a message to another conversation.
    """
    valid = validate_create(data, settings)
    mime_prefix = MEDIA_TYPES.get(valid.message_type)
    location, audio = valid.location, valid.audio
    row = await conn.fetchrow(
        SEND_SQL,
        RATE_LIMIT_ACTION,
        float(RATE_WINDOW_S),
        conversation_id,
        valid.message_type,
        mime_prefix,
        valid.attachment_id,
        data.reply_to_id,
        valid.body,
        data.client_id,
        location.latitude if location else None,
        location.longitude if location else None,
        location.accuracy if location else None,
        audio.duration_s if audio else None,
        audio.waveform if audio else None,
        settings.rate_limit_per_min,
    )
    assert row is not None
    if row["rate_hits"] > settings.rate_limit_per_min:
        raise RateLimited(
            retry_after=math.ceil(row["rate_reset_in"]),
            detail=(
                f"rate limit of {settings.rate_limit_per_min} {RATE_LIMIT_ACTION} "
                f"per {RATE_WINDOW_S} s exceeded"
            ),
        )
    if not row["conversation_found"]:
        raise NotFound("conversation", conversation_id)
    if valid.attachment_id is not None:
        if row["attachment_fits"] is None:
            raise NotFound("attachment", valid.attachment_id)
        if not row["attachment_fits"]:
            raise Unprocessable(
                f"attachment {valid.attachment_id} is not a {mime_prefix}* file, "
                f"as a {valid.message_type} message needs"
            )
    if data.reply_to_id is not None and not row["reply_found"]:
        raise NotFound(f"message {data.reply_to_id} in conversation", conversation_id)
    if row["id"] is not None:
        # Every event of a new message is for its conversation's two participants: the coalesced
        # doorbell rings for them alone (db.name_recipients, realtime/doorbell.py).
        participants = (
            identity.user,
            User(identity.organisation_id, row["receiver_type"], row["receiver_id"]),
        )
        db.name_recipients(conn, participants)
        return message_from_row(row), True
    original = await conn.fetchrow(ORIGINAL_BY_CLIENT_ID_SQL, data.client_id)
    if original is None or original["conversation_id"] != conversation_id:
        raise Conflict(f"client_id {data.client_id!r} was already used for another message")
    return message_from_row(original), False


# --- changing ----------------------------------------------------------------------------------

# The edit, with why it did not happen when it did not. `now()` is the transaction's start.
# visibility: vechat_messages_select_participant, vechat_messages_update_participant; the guard
# vechat.messages_guard lets only the sender change the text of a live text message.
EDIT_SQL = f"""
WITH target AS (
    SELECT m.organisation_id, m.id, m.message_type, m.deleted_at IS NOT NULL AS deleted,
           {SENT_BY_CALLER} AS mine,
           m.created_at > now() - make_interval(secs => $3::float8) AS in_window
    FROM public.vechat_messages m
    WHERE m.id = $1
),
updated AS (
    UPDATE public.vechat_messages m SET message = $2
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id
      AND t.mine AND t.message_type = 'text' AND NOT t.deleted AND t.in_window
    RETURNING m.id
)
SELECT t.message_type, t.deleted, t.mine, t.in_window FROM target t
"""


async def edit_message(
    conn: db.Connection, message_id: int, data: MessageUpdate, settings: Settings
) -> Message:
    """Replace the text of the caller's text message within `VECHAT_EDIT_WINDOW_S`.

    `NotFound` (404) unless the caller sent or received it; `Forbidden` (403) for the receiver;
    `Unprocessable` (422) for a message that is not text, is deleted, or is older than the
    window, and for a blank body. The previous text goes to the edit history (a trigger).
    """
    check_body_length(data.body, settings)
    if not data.body.strip():
        raise Unprocessable("a text message needs a non-blank body")
    row = await conn.fetchrow(EDIT_SQL, message_id, data.body, float(settings.edit_window_s))
    if row is None:
        raise NotFound("message", message_id)
    if not row["mine"]:
        raise Forbidden(f"only the sender may edit message {message_id}")
    if row["deleted"]:
        raise Unprocessable(f"message {message_id} is deleted")
    if row["message_type"] != "text":
        raise Unprocessable(f"message {message_id} is not a text message")
    if not row["in_window"]:
        raise Unprocessable(
            f"message {message_id} can no longer be edited "
            f"(edit window of {settings.edit_window_s} s has passed)"
        )
    (message,) = await fetch_messages(conn, [message_id])
    return message


# visibility: vechat_messages_select_participant; vechat_message_edits_select_participant.
EDITS_SQL = """
SELECT m.id AS message_id, e.id, e.previous_message, e.edited_at
FROM public.vechat_messages m
LEFT JOIN public.vechat_message_edits e
    ON e.organisation_id = m.organisation_id AND e.message_id = m.id AND e.id > $2
WHERE m.id = $1
ORDER BY e.id
LIMIT $3
"""

EDITS_CURSOR = "edits"


async def message_edits(
    conn: db.Connection, message_id: int, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> MessageEditPage | None:
    """Earlier versions of a message, oldest first; None unless the caller may read it."""
    after = cursors.decode(cursor, EDITS_CURSOR, 1)[0] if cursor else 0
    rows = await conn.fetch(EDITS_SQL, message_id, after, limit + 1)
    if not rows:
        return None
    items = [
        MessageEdit(
            id=row["id"],
            message_id=row["message_id"],
            body=row["previous_message"],
            edited_at=row["edited_at"],
        )
        for row in rows[:limit]
        if row["id"] is not None
    ]
    next_cursor = cursors.encode(EDITS_CURSOR, items[-1].id) if len(rows) > limit else None
    return MessageEditPage(items=items, next_cursor=next_cursor)


# Delete for everyone: the sender sets deleted_at; vechat.messages_guard clears the content and
# the after-update trigger the edit history. Nothing happens to an already deleted message.
# visibility: vechat_messages_select_participant, vechat_messages_update_participant.
DELETE_FOR_EVERYONE_SQL = f"""
WITH target AS (
    SELECT m.organisation_id, m.id,
           {SENT_BY_CALLER} AS mine
    FROM public.vechat_messages m
    WHERE m.id = $1
),
updated AS (
    UPDATE public.vechat_messages m SET deleted_at = now()
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id AND t.mine
      AND m.deleted_at IS NULL
    RETURNING m.id
)
SELECT t.mine FROM target t
"""

# Delete for me: the caller's own hide flag (sender's or receiver's), false → true only.
# visibility: vechat_messages_select_participant, vechat_messages_update_participant.
DELETE_FOR_ME_SQL = f"""
WITH target AS (
    SELECT m.organisation_id, m.id,
           {SENT_BY_CALLER} AS mine
    FROM public.vechat_messages m
    WHERE m.id = $1
),
updated AS (
    UPDATE public.vechat_messages m
    SET is_deleted_by_sender = m.is_deleted_by_sender OR t.mine,
        is_deleted_by_receiver = m.is_deleted_by_receiver OR NOT t.mine
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id
      AND NOT CASE WHEN t.mine THEN m.is_deleted_by_sender ELSE m.is_deleted_by_receiver END
    RETURNING m.id
)
SELECT t.mine FROM target t
"""


async def delete_message(conn: db.Connection, message_id: int, *, for_everyone: bool) -> None:
    """Delete a message for everyone (sender only, else `Forbidden`) or for the caller only.

    `NotFound` unless the caller sent or received it. Deleting twice is not an error.
    """
    sql = DELETE_FOR_EVERYONE_SQL if for_everyone else DELETE_FOR_ME_SQL
    row = await conn.fetchrow(sql, message_id)
    if row is None:
        raise NotFound("message", message_id)
    if for_everyone and not row["mine"]:
        raise Forbidden(f"only the sender may delete message {message_id} for everyone")


# Statements that change several messages lock them first, in id order, then update them: two
# tabs (or a tab and a phone) of one user changing the same messages would otherwise lock them in
# whatever order each one's plan reads them -- an index in id order, the heap in page order -- and
# deadlock. A row another transaction changed meanwhile is read again, and checked again, before
# it is locked, so the update needs no conditions of its own beyond the locked ids.
LOCK_IN_ID_ORDER = "ORDER BY m.id FOR NO KEY UPDATE OF m"

# Only messages the caller received, and only unread ones, change (locked in id order); a trigger
# adjusts the counters and emits the read receipts.
# visibility: vechat_messages_update_participant; vechat.messages_guard (receiver: is_read).
MARK_READ_SQL = f"""
WITH target AS MATERIALIZED (
    SELECT m.organisation_id, m.id FROM public.vechat_messages m
    WHERE m.id = ANY ($1::bigint[])
      AND m.receiver_id = (SELECT vechat.current_user_id())
      AND m.receiver_type = (SELECT vechat.current_user_type())
      AND NOT m.is_read
    {LOCK_IN_ID_ORDER}
),
marked AS (
    UPDATE public.vechat_messages m SET is_read = true
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id
    RETURNING 1
)
SELECT count(*) FROM marked
"""


async def mark_read(conn: db.Connection, message_ids: list[int]) -> int:
    """Mark the given messages the caller received as read; how many were unread."""
    return int(await conn.fetchval(MARK_READ_SQL, message_ids))


# --- HTTP --------------------------------------------------------------------------------------


def _created(message: Message, created: bool) -> Response[Message]:
    return Response(message, status_code=201 if created else 200)


class MessagesController(Controller):
    """`/conversations/{id}/messages` and `/messages…`: pages, sending, edits, deletes, reads."""

    path = "/"
    tags = ["messages"]

    @get(
        "/conversations/{conversation_id:int}/messages",
        summary="A page of a conversation in chronological order (newest page by default)",
    )
    async def list_messages(
        self,
        conn: ConnDep,
        conversation_id: PathId,
        before: Annotated[
            int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="only messages older than")
        ] = None,
        after: Annotated[
            int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="only messages newer than")
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> MessagePage:
        page = await message_page(conn, conversation_id, before=before, after=after, limit=limit)
        if page is None:
            raise NotFound("conversation", conversation_id)
        return page

    @post(
        "/conversations/{conversation_id:int}/messages",
        summary="Send a message (201); the same client_id again returns the original (200)",
        status_code=201,
    )
    async def send_to_conversation(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        settings: SettingsDep,
        conversation_id: PathId,
        data: JSONBody[MessageCreate],
    ) -> Response[Message]:
        return _created(*await send_message(conn, identity, conversation_id, data, settings))

    @post(
        "/messages",
        summary="Send a message to a receiver, opening the conversation on demand",
        status_code=201,
    )
    async def send_to_receiver(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        settings: SettingsDep,
        data: JSONBody[PeerMessageCreate],
    ) -> Response[Message]:
        validate_create(data, settings)  # a bad message opens no conversation
        conversation_id, _ = await open_conversation(conn, identity, data.receiver)
        return _created(*await send_message(conn, identity, conversation_id, data, settings))

    @post("/messages/read", summary="Mark messages the caller received as read", status_code=200)
    async def read_messages(self, conn: ConnDep, data: JSONBody[MessagesRead]) -> Marked:
        return Marked(marked=await mark_read(conn, list(data.message_ids)))

    @get("/messages/search", summary="Full-text search over the messages shown to the caller")
    async def search(
        self,
        conn: ConnDep,
        q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_SEARCH_CHARS)],
        conversation_id: Annotated[int | None, QueryParameter(ge=1, le=BIGINT_MAX)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Annotated[str | None, QueryParameter(max_length=cursors.MAX_CURSOR_CHARS)] = None,
    ) -> MessagePage:
        if not q.strip():
            raise BadRequest("q must not be blank")
        page = await search_messages(
            conn, q, conversation_id=conversation_id, cursor=cursor, limit=limit
        )
        if page is None:
            raise NotFound("conversation", conversation_id)
        return page

    @patch("/messages/{message_id:int}", summary="Edit the text of one's own text message")
    async def edit(
        self,
        conn: ConnDep,
        settings: SettingsDep,
        message_id: PathId,
        data: JSONBody[MessageUpdate],
    ) -> Message:
        return await edit_message(conn, message_id, data, settings)

    @get("/messages/{message_id:int}/edits", summary="Earlier versions of a message")
    async def edits(
        self,
        conn: ConnDep,
        message_id: PathId,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Annotated[str | None, QueryParameter(max_length=cursors.MAX_CURSOR_CHARS)] = None,
    ) -> MessageEditPage:
        page = await message_edits(conn, message_id, cursor=cursor, limit=limit)
        if page is None:
            raise NotFound("message", message_id)
        return page

    @delete(
        "/messages/{message_id:int}",
        summary="Delete a message for everyone (sender only) or for oneself",
        status_code=204,
    )
    async def remove(
        self,
        conn: ConnDep,
        message_id: PathId,
        for_: Annotated[
            Literal["everyone", "me"],
            QueryParameter(name="for", description="everyone (sender only) or me"),
        ] = "me",
    ) -> None:
        await delete_message(conn, message_id, for_everyone=for_ == "everyone")
