"""Reading messages: the column → field mapping, pages, lookups by id, search, edit history.

The table keeps the ERP's column names; `message_columns` (`MESSAGE_COLUMNS`) is the one place
that maps them to the API's (`message` → `body`, `voice` → `audio`, `location_*`, `audio_*`,
`file_*` → nested objects, via `message_from_row`). Who sees a message is row-level security
(`vechat_messages_select_participant`: sender and receiver only); what each of them is *shown*
also honours "delete for me" (`is_deleted_by_*`) and a conversation deleted for them
(`hidden_through_message_id_participantN`): `MESSAGE_SHOWN`.
"""

from __future__ import annotations

from vechat_rls import db
from vechat_rls.chat import cursors
from vechat_rls.chat.attachments import Attachment
from vechat_rls.chat.errors import Invalid
from vechat_rls.chat.messages.shapes import (
    BODY_PREVIEW_CHARS,
    DEFAULT_LIMIT,
    Audio,
    Location,
    Message,
    MessageEdit,
    MessageEditPage,
    MessagePage,
    ReplyTo,
)
from vechat_rls.chat.participants import Participant
from vechat_rls.identity import BIGINT_MAX

# Who reads: the transaction's user. The realtime hub reads events for several users in one
# query and names each row's recipient instead (realtime/events.py).
CALLER_ID = "(SELECT ctx.user_id FROM vechat.context ctx)"
CALLER_TYPE = "(SELECT ctx.user_type FROM vechat.context ctx)"


# Whether the receiver of message `m` shows read receipts (their settings are private; the flag
# is copied to their presence row, readable in the organisation:
# vechat_presence_select_organisation, db/policies/vechat_presence.sql). vechat.read_events
# computes the same for the hub.
RECEIPTS_SHOWN = """
coalesce((SELECT p.show_read_receipts FROM public.vechat_presence p
          WHERE p.organisation_id = m.organisation_id AND p.user_type = m.receiver_type
            AND p.user_id = m.receiver_id), true)"""


REPLY_COLUMNS = f"""
r.id AS reply_id, r.sender_id AS reply_sender_id, r.sender_type AS reply_sender_type,
CASE WHEN r.message_type = 'voice' THEN 'audio' ELSE r.message_type END AS reply_message_type,
left(r.message, {BODY_PREVIEW_CHARS}) AS reply_body_preview,
r.deleted_at IS NOT NULL AS reply_deleted"""

NO_REPLY_COLUMNS = """
NULL::bigint AS reply_id, NULL::bigint AS reply_sender_id, NULL::text AS reply_sender_type,
NULL::text AS reply_message_type, NULL::text AS reply_body_preview,
NULL::boolean AS reply_deleted"""


def message_columns(
    viewer_id: str = CALLER_ID,
    viewer_type: str = CALLER_TYPE,
    receipts_shown: str = RECEIPTS_SHOWN,
    *,
    unread: bool = False,
    reply: bool = True,
) -> str:
    """The column → field mapping, over a message `m` and the message it replies to `r`
    (REPLY_JOIN), as the viewer (SQL expressions for their id and type) is shown it.

    The sender sees when the receiver read the message only if the receiver shows read receipts
    (`receipts_shown`, an SQL expression). `unread`: `m` is known to be unread (a message just
    inserted), so `read_at` is taken as it is, with no lookup. `reply=False`: `m` replies to
    nothing, so there is no `r` (no REPLY_JOIN) and its columns are NULL. Each lookup left out is
    a plan node and its policies' context reads fewer (the send statement's).
    """
    read_at_shown = "m.read_at" if unread else f"""
CASE WHEN m.read_at IS NULL
          OR NOT (m.sender_id = {viewer_id} AND m.sender_type = {viewer_type})
          OR {receipts_shown}
     THEN m.read_at
END"""
    reply_columns = REPLY_COLUMNS if reply else NO_REPLY_COLUMNS
    return f"""
m.id, m.conversation_id, m.sender_id, m.sender_type, m.receiver_id, m.receiver_type,
CASE WHEN m.message_type = 'voice' THEN 'audio' ELSE m.message_type END AS message_type,
m.message AS body,
m.attachment_id, m.file_name, m.file_size, m.file_type,
m.location_latitude::float8 AS latitude, m.location_longitude::float8 AS longitude,
m.location_accuracy::float8 AS accuracy,
m.audio_duration AS duration_s, m.audio_waveform AS waveform,
{reply_columns},
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
CALLER_IS_PARTICIPANT1 = """
((c.participant1_id, c.participant1_type)
 = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
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
            deleted=bool(row["reply_deleted"]),
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


async def fetch_messages(conn: db.Transaction, ids: list[int]) -> list[Message]:
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
    conn: db.Transaction,
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
    conn: db.Transaction,
    q: str,
    *,
    conversation_id: int | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> MessagePage | None:
    """Messages shown to the caller whose text matches `q` (web-search syntax), newest first.

    None when `conversation_id` is given and is not the caller's conversation (404); a blank
    `q` is `Invalid`.
    """
    if not q.strip():
        raise Invalid("q must not be blank")
    below = cursors.decode(cursor, SEARCH_CURSOR, int)[0] if cursor else BIGINT_MAX
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
    conn: db.Transaction, message_id: int, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> MessageEditPage | None:
    """Earlier versions of a message, oldest first; None unless the caller may read it."""
    after = cursors.decode(cursor, EDITS_CURSOR, int)[0] if cursor else 0
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
