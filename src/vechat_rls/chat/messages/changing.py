"""Changing messages: editing, deleting (for everyone or for oneself), marking read.

Edit history and events are written by the triggers (db/schema/20_message_triggers.sql); which
column each participant may change is `vechat.messages_guard`'s rule.
"""

from __future__ import annotations

from vechat_rls import db
from vechat_rls.chat.errors import Forbidden, NotFound, RuleBroken
from vechat_rls.chat.messages.reading import SENT_BY_CALLER, fetch_messages
from vechat_rls.chat.messages.sending import check_body_length
from vechat_rls.chat.messages.shapes import Message, MessageUpdate
from vechat_rls.config import Settings

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
    conn: db.Transaction, message_id: int, data: MessageUpdate, settings: Settings
) -> Message:
    """Replace the text of the caller's text message within `VECHAT_EDIT_WINDOW_S`.

    `NotFound` (404) unless the caller sent or received it; `Forbidden` (403) for the receiver;
    `RuleBroken` (422) for a message that is not text, is deleted, or is older than the
    window, and for a blank body. The previous text goes to the edit history (a trigger).
    """
    check_body_length(data.body, settings)
    if not data.body.strip():
        raise RuleBroken("a text message needs a non-blank body")
    row = await conn.fetchrow(EDIT_SQL, message_id, data.body, float(settings.edit_window_s))
    if row is None:
        raise NotFound("message", message_id)
    if not row["mine"]:
        raise Forbidden(f"only the sender may edit message {message_id}")
    if row["deleted"]:
        raise RuleBroken(f"message {message_id} is deleted")
    if row["message_type"] != "text":
        raise RuleBroken(f"message {message_id} is not a text message")
    if not row["in_window"]:
        raise RuleBroken(
            f"message {message_id} can no longer be edited "
            f"(edit window of {settings.edit_window_s} s has passed)"
        )
    (message,) = await fetch_messages(conn, [message_id])
    return message


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


async def delete_message(conn: db.Transaction, message_id: int, *, for_everyone: bool) -> None:
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
      AND m.receiver_id = (SELECT ctx.user_id FROM vechat.context ctx)
      AND m.receiver_type = (SELECT ctx.user_type FROM vechat.context ctx)
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


async def mark_read(conn: db.Transaction, message_ids: list[int]) -> int:
    """Mark the given messages the caller received as read; how many were unread."""
    return int(await conn.fetchval(MARK_READ_SQL, message_ids))


