"""Sending a message: the rules of each message type, then one statement that does the rest.

Counters, the last message, un-archiving and the events are written by the triggers in
db/schema/20_message_triggers.sql in the same transaction; nothing here counts.
"""

from __future__ import annotations

import math

import msgspec

from vechat_rls import db
from vechat_rls.chat import ratelimit
from vechat_rls.chat.errors import Conflict, Invalid, NotFound, RateLimited, RuleBroken
from vechat_rls.chat.messages.reading import (
    MESSAGE_COLUMNS,
    REPLY_JOIN,
    message_columns,
    message_from_row,
)
from vechat_rls.chat.messages.shapes import (
    Audio,
    Location,
    Message,
    MessageCreate,
    MessageType,
    PeerMessageCreate,
)
from vechat_rls.chat.participants import open_conversation
from vechat_rls.config import Settings
from vechat_rls.identity import Identity, User

RATE_LIMIT_ACTION = "messages"

MEDIA_TYPES: dict[str, str | None] = {
    "image": "image/",
    "video": "video/",
    "audio": "audio/",
    "file": None,
}
"""Attachment-carrying types and the MIME prefix their file must have (`file`: any)."""



class _Validated(msgspec.Struct, frozen=True, kw_only=True):
    message_type: MessageType
    body: str | None
    attachment_id: int | None
    location: Location | None
    audio: Audio | None


def check_body_length(body: str, settings: Settings) -> None:
    """`Invalid` (400, naming the field) for a body over `VECHAT_MAX_MESSAGE_CHARS`."""
    if len(body) > settings.max_message_chars:
        raise Invalid(
            "request validation failed",
            field="body",
            reason=f"Expected `str` of length <= {settings.max_message_chars}",
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
            raise RuleBroken("a text message needs a non-blank body")
        misplaced = ["attachment_id", "location", "audio"]
    elif message_type == "location":
        if data.location is None:
            raise RuleBroken("a location message needs a location")
        misplaced = ["attachment_id", "audio"]
    else:
        if data.attachment_id is None:
            raise RuleBroken(f"a {message_type} message needs an attachment_id")
        misplaced = ["location"] if message_type == "audio" else ["location", "audio"]
    for name in misplaced:
        if getattr(data, name) is not None:
            raise RuleBroken(f"{name} does not belong to a {message_type} message")
    if body is not None and not body.strip() and message_type != "text":
        body = None  # an empty caption is no caption
    return _Validated(
        message_type=message_type,
        body=body,
        attachment_id=data.attachment_id,
        location=data.location,
        audio=data.audio,
    )


# One statement: count the send against the rate limit (chat/ratelimit.py's own statement, $1-$2),
# find the conversation and the peer, the attachment and the replied-to message, insert — only if
# all of it holds — and return the new message with a diagnosis of what was missing otherwise.
# `ON CONFLICT … DO NOTHING` on the sender's client_id makes retries idempotent: it waits for a
# concurrent insert of the same client_id and then inserts nothing; `ORIGINAL_BY_CLIENT_ID_SQL`
# (a new snapshot) then finds the original.
# visibility: vechat_conversations_select_participant — the conversation must be the caller's;
# vechat_attachments_select_uploader_or_participant plus the uploader condition below (and the
# key vechat_messages_attachment_fkey) — only the uploader attaches a file;
# vechat_messages_insert_sender — the caller sends only as themselves, to their peer.
#
# Four variants, with and without the attachment and the replied-to message: a lookup a send
# does not need is not in its plan. Every lookup carries its table's policies, and each policy
# reads the signed context (a plan node, executor set-up and a lock check per read, whether it
# runs or not): a text message's statement holds 17 context reads where one statement for all
# cases held 35. The caller is named by parameters ($13, $14, the transaction's own identity)
# where the statement only needs to know who the caller is (the peer, the uploader): a wrong one
# would find nothing or be refused by vechat_messages_insert_sender, which reads the context.
_FIXED_PARAMETERS = 14
"""$1 action, $2 window_s, $3 conversation_id, $4 message_type, $5 body, $6 client_id,
$7-$9 latitude, longitude, accuracy, $10 duration_s, $11 waveform, $12 limit, $13 caller_id,
$14 caller_type: the parameters every variant takes (`send_message` passes them in this order)."""


def send_sql(*, attachment: bool, reply: bool) -> str:
    """The send statement for a message with or without an attachment and a replied-to message;
    its parameters are the `_FIXED_PARAMETERS`, then `mime_prefix` and `attachment_id` (with an
    attachment), then `reply_to_id` (with a reply)."""
    n = _FIXED_PARAMETERS
    mime, att_id = (f"${n + 1}::text", f"${n + 2}::bigint") if attachment else ("", "")
    reply_id = f"${n + 1 + 2 * attachment}::bigint" if reply else ""
    caller_is_p1 = "((c.participant1_id, c.participant1_type) = ($13::bigint, $14::text))"
    att_cte = f"""
att AS (
    SELECT a.id, a.file_name, a.file_size, a.file_type,
           CASE WHEN {mime} IS NULL THEN true ELSE a.file_type LIKE {mime} || '%' END AS fits
    FROM public.vechat_attachments a
    WHERE a.id = {att_id} AND (a.uploader_id, a.uploader_type) = ($13::bigint, $14::text)
),""" if attachment else ""
    # By id alone (the primary key): with `conversation_id = $3` here a generic plan scanned
    # the whole conversation. Same conversation is checked where it is used.
    reply_cte = f"""
reply AS (
    SELECT r.id, r.conversation_id FROM public.vechat_messages r WHERE r.id = {reply_id}
),""" if reply else ""
    return f"""
WITH rate AS ({ratelimit.HIT_SQL}),
conv AS (
    SELECT c.organisation_id, c.id,
           CASE WHEN {caller_is_p1} THEN c.participant2_id ELSE c.participant1_id END AS peer_id,
           CASE WHEN {caller_is_p1} THEN c.participant2_type ELSE c.participant1_type END
               AS peer_type
    FROM public.vechat_conversations c
    WHERE c.id = $3
),{att_cte}{reply_cte}
inserted AS (
    INSERT INTO public.vechat_messages AS m
        (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type,
         message_type, message, attachment_id, file_name, file_size, file_type,
         reply_to_message_id, client_id, location_latitude, location_longitude,
         location_accuracy, audio_duration, audio_waveform)
    SELECT conv.organisation_id, conv.id, $13::bigint, $14::text, conv.peer_id, conv.peer_type,
           $4::text, $5::text,
           {"att.id, att.file_name, att.file_size, att.file_type" if attachment
            else "NULL, NULL, NULL, NULL"},
           {"reply.id" if reply else "NULL"},
           $6::text, $7::float8, $8::float8, $9::float8, $10::integer, $11::text
    FROM conv
    CROSS JOIN rate
    {"JOIN att ON att.fits" if attachment else ""}
    {"JOIN reply ON reply.conversation_id = conv.id" if reply else ""}
    WHERE rate.hits <= $12
    ON CONFLICT (organisation_id, sender_type, sender_id, client_id) DO NOTHING
    RETURNING m.*
)
SELECT rate.hits AS rate_hits, rate.reset_in AS rate_reset_in,
       EXISTS (SELECT 1 FROM conv) AS conversation_found,
       {"(SELECT fits FROM att)" if attachment else "NULL::boolean"} AS attachment_fits,
       {"EXISTS (SELECT 1 FROM reply WHERE reply.conversation_id = $3)" if reply else "false"}
           AS reply_found,
       {message_columns(unread=True, reply=reply)}
FROM rate
LEFT JOIN inserted m ON true
{REPLY_JOIN if reply else ""}
"""


SEND_SQL = {
    (attachment, reply): send_sql(attachment=attachment, reply=reply)
    for attachment in (False, True)
    for reply in (False, True)
}
"""The send statements by (with an attachment, with a replied-to message)."""

# visibility: vechat_messages_select_participant — the caller's own sent message.
ORIGINAL_BY_CLIENT_ID_SQL = f"""
SELECT {MESSAGE_COLUMNS}
FROM public.vechat_messages m
{REPLY_JOIN}
WHERE m.sender_id = (SELECT ctx.user_id FROM vechat.context ctx)
  AND m.sender_type = (SELECT ctx.user_type FROM vechat.context ctx)
  AND m.client_id = $1
"""

RATE_WINDOW_S = 60


async def send_message(
    conn: db.Transaction,
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
    `RuleBroken`/`Invalid` (`validate_create`); `RateLimited` past
    `VECHAT_RATE_LIMIT_PER_MIN` sends per minute; `NotFound` for a conversation, attachment or
    replied-to message the caller may not use — a reply must quote a message *of the same
    conversation*, and one from elsewhere is answered exactly like one that does not exist (404);
    `RuleBroken` for an attachment whose MIME type does not fit the message type; `Conflict`
    when the `client_id` was already used for a message to another conversation.
    """
    valid = validate_create(data, settings)
    mime_prefix = MEDIA_TYPES.get(valid.message_type)
    location, audio = valid.location, valid.audio
    attachment, reply = valid.attachment_id is not None, data.reply_to_id is not None
    arguments: list[object] = [
        RATE_LIMIT_ACTION,
        float(RATE_WINDOW_S),
        conversation_id,
        valid.message_type,
        valid.body,
        data.client_id,
        location.latitude if location else None,
        location.longitude if location else None,
        location.accuracy if location else None,
        audio.duration_s if audio else None,
        audio.waveform if audio else None,
        settings.rate_limit_per_min,
        identity.user_id,
        identity.user_type,
    ]
    if attachment:
        arguments += [mime_prefix, valid.attachment_id]
    if reply:
        arguments.append(data.reply_to_id)
    row = await conn.fetchrow(SEND_SQL[attachment, reply], *arguments)
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
            raise RuleBroken(
                f"attachment {valid.attachment_id} is not a {mime_prefix}* file, "
                f"as a {valid.message_type} message needs"
            )
    if data.reply_to_id is not None and not row["reply_found"]:
        raise NotFound(f"message {data.reply_to_id} in conversation", conversation_id)
    if row["id"] is not None:
        # Every event of a new message is for its conversation's two participants: the ringer
        # rings for them alone (db.Transaction.name_recipients, realtime/ringer.py).
        participants = (
            identity.user,
            User(identity.organisation_id, row["receiver_type"], row["receiver_id"]),
        )
        conn.name_recipients(participants)
        return message_from_row(row), True
    original = await conn.fetchrow(ORIGINAL_BY_CLIENT_ID_SQL, data.client_id)
    if original is None or original["conversation_id"] != conversation_id:
        raise Conflict(f"client_id {data.client_id!r} was already used for another message")
    return message_from_row(original), False


async def send_to_receiver(
    conn: db.Transaction, identity: Identity, data: PeerMessageCreate, settings: Settings
) -> tuple[Message, bool]:
    """`send_message` to `data.receiver`, in their conversation with the caller, opened on
    demand (`open_conversation`); a message that breaks a rule opens no conversation."""
    validate_create(data, settings)
    conversation_id, _ = await open_conversation(conn, identity, data.receiver)
    return await send_message(conn, identity, conversation_id, data, settings)
