"""Conversations: the caller's 1:1 conversations, their flags, read state and "delete for me".

A conversation row holds both participants' state side by side (`…_participant1`, `…_participant2`,
pairs stored in a fixed order); `CONVERSATION_SQL` picks the caller's side, so the API speaks of
`peer`, `unread_count`, `archived`, `muted` only. Counters, the last message and un-archiving on a
new incoming message are the message triggers' work (db/schema/20_message_triggers.sql).

"Delete for me" sets the caller's `hidden_through_message_id_participantN` to the newest message,
which hides every message up to it from the caller, and sets the caller's hide flag on those of
them the unread counter still counts (so the counter follows, by trigger). The conversation is
listed again once a newer message arrives, showing only what came after.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from vechat_rls import db
from vechat_rls.chat import cursors
from vechat_rls.chat.errors import NotFound
from vechat_rls.chat.messages.changing import LOCK_IN_ID_ORDER
from vechat_rls.chat.messages.reading import (
    CALLER_IS_PARTICIPANT1,
    MESSAGE_COLUMNS,
    MESSAGE_SHOWN,
    REPLY_JOIN,
    message_from_row,
)
from vechat_rls.chat.messages.shapes import DEFAULT_LIMIT, Message
from vechat_rls.chat.participants import Id, Participant, open_conversation
from vechat_rls.chat.presence import Status
from vechat_rls.identity import BIGINT_MAX, Identity, UserType


class PeerPresence(msgspec.Struct, frozen=True, kw_only=True):
    """The peer's presence as others see it (`vechat.presence_view`)."""

    status: Status
    last_seen: datetime | None


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    """The other participant, with their directory name (null when not in the directory)."""

    user_id: int
    user_type: UserType
    display_name: str | None
    presence: PeerPresence


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation as one participant sees it; the counters and flags are theirs."""

    id: int
    peer: Peer
    last_message: Message | None
    last_message_at: datetime | None
    unread_count: int
    archived: bool
    muted: bool
    created_at: datetime


class ConversationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Conversation]
    next_cursor: str | None


class ConversationCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /conversations`: create-or-get the conversation with `peer`."""

    peer: Participant


class ConversationUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PATCH /conversations/{id}`: the caller's own flags; a field not given stays as it is."""

    archived: bool | msgspec.UnsetType = msgspec.UNSET
    muted: bool | msgspec.UnsetType = msgspec.UNSET


class ConversationReadCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /conversations/{id}/read`: mark incoming messages read, all or up to an id."""

    up_to_message_id: Id | None = None


# The caller's side of conversation `c`, then the peer's name and presence, and the newest
# message shown to the caller (MESSAGE_SHOWN) with what it replies to.
# visibility: vechat_conversations_select_participant (db/policies/vechat_conversations.sql);
# vechat_contacts_select_visible (db/policies/vechat_contacts.sql) for the peer's name;
# vechat.presence_view (security_invoker) for presence; vechat_messages_select_participant.
_CONVERSATION_SELECT = f"""
SELECT c.id AS conversation_id_, c.created_at AS conversation_created_at,
       c.last_message_at AS conversation_last_message_at,
       coalesce(c.last_message_at, c.created_at) AS conversation_sort_at,
       mine.peer_id, mine.peer_type, mine.unread_count, mine.archived, mine.muted,
       k.display_name AS peer_display_name,
       coalesce(p.status, 'offline') AS peer_status, p.last_seen AS peer_last_seen,
       {MESSAGE_COLUMNS}
FROM public.vechat_conversations c
CROSS JOIN LATERAL (
    SELECT CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.participant2_id
                ELSE c.participant1_id END AS peer_id,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.participant2_type
                ELSE c.participant1_type END AS peer_type,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.unread_count_participant1
                ELSE c.unread_count_participant2 END AS unread_count,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.is_archived_by_participant1
                ELSE c.is_archived_by_participant2 END AS archived,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.is_muted_by_participant1
                ELSE c.is_muted_by_participant2 END AS muted,
           CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.hidden_through_message_id_participant1
                ELSE c.hidden_through_message_id_participant2 END AS hidden_through
) mine
LEFT JOIN public.vechat_contacts k
    ON k.organisation_id = c.organisation_id AND k.user_type = mine.peer_type
   AND k.user_id = mine.peer_id
LEFT JOIN vechat.presence_view p
    ON p.organisation_id = c.organisation_id AND p.user_type = mine.peer_type
   AND p.user_id = mine.peer_id
LEFT JOIN LATERAL (
    SELECT m.* FROM public.vechat_messages m
    WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
      AND {MESSAGE_SHOWN}
    ORDER BY m.id DESC
    LIMIT 1
) m ON true
{REPLY_JOIN}
"""

CONVERSATION_SQL = f"""{_CONVERSATION_SELECT}
WHERE c.id = $1
"""

# Most recent activity first, keyset on (activity, id): $1 archived filter (NULL = any),
# $2/$3 the previous page's last (activity, id) or NULLs, $4 rows. A conversation the caller
# deleted is listed only once a newer message arrived (hidden_through 0 = deleted while empty).
CONVERSATIONS_PAGE_SQL = f"""{_CONVERSATION_SELECT}
WHERE (mine.hidden_through IS NULL OR c.last_message_id > mine.hidden_through)
  AND ($1::boolean IS NULL OR mine.archived = $1::boolean)
  AND ($2::timestamptz IS NULL
       OR (coalesce(c.last_message_at, c.created_at), c.id) < ($2::timestamptz, $3::bigint))
ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
LIMIT $4
"""

LIST_CURSOR = "conversations"


def conversation_from_row(row: db.Record) -> Conversation:
    """A `Conversation` from a row of `CONVERSATION_SQL`."""
    return Conversation(
        id=row["conversation_id_"],
        peer=Peer(
            user_id=row["peer_id"],
            user_type=row["peer_type"],
            display_name=row["peer_display_name"],
            presence=PeerPresence(status=row["peer_status"], last_seen=row["peer_last_seen"]),
        ),
        last_message=message_from_row(row) if row["id"] is not None else None,
        last_message_at=row["conversation_last_message_at"],
        unread_count=row["unread_count"],
        archived=row["archived"],
        muted=row["muted"],
        created_at=row["conversation_created_at"],
    )


async def fetch_conversation(
    conn: db.Transaction, identity: Identity, conversation_id: int
) -> Conversation | None:
    """The conversation as the transaction's user sees it, or None when it is not theirs.

    One round trip. `identity` must be the user of `conn`'s tenant transaction (the SQL reads it
    from there). A conversation the user deleted for themselves is still returned by id, with
    only what they are shown (`last_message` null until a newer message arrives).
    """
    row = await conn.fetchrow(CONVERSATION_SQL, conversation_id)
    return None if row is None else conversation_from_row(row)


async def conversation_page(
    conn: db.Transaction,
    *,
    archived: bool | None = False,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> ConversationPage:
    """The caller's conversations, most recent activity first; `archived=None` for all.

    The cursor is the (activity, id) of the last row: conversations created while paging land
    before it and never repeat or push others across a page boundary. A conversation that gets a
    new message while the caller pages moves to the top (the caller hears of it by event).
    """
    at: datetime | None = None
    last_id: int | None = None
    if cursor:
        key, last_id = cursors.decode(cursor, LIST_CURSOR, int, int)
        at = cursors.timestamp_from_key(key)
    rows = await conn.fetch(CONVERSATIONS_PAGE_SQL, archived, at, last_id, limit + 1)
    items = [conversation_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = cursors.encode(
            LIST_CURSOR,
            cursors.timestamp_key(last["conversation_sort_at"]),
            last["conversation_id_"],
        )
    return ConversationPage(items=items, next_cursor=next_cursor)


# The caller's flags only ($2 archived, $3 muted; NULL = leave), as vechat.conversations_guard
# demands. visibility: vechat_conversations_update_participant.
UPDATE_FLAGS_SQL = f"""
UPDATE public.vechat_conversations c SET
    is_archived_by_participant1 = CASE WHEN {CALLER_IS_PARTICIPANT1} AND $2::boolean IS NOT NULL
                                       THEN $2::boolean ELSE c.is_archived_by_participant1 END,
    is_archived_by_participant2 = CASE WHEN NOT {CALLER_IS_PARTICIPANT1} AND $2::boolean IS NOT NULL
                                       THEN $2::boolean ELSE c.is_archived_by_participant2 END,
    is_muted_by_participant1 = CASE WHEN {CALLER_IS_PARTICIPANT1} AND $3::boolean IS NOT NULL
                                    THEN $3::boolean ELSE c.is_muted_by_participant1 END,
    is_muted_by_participant2 = CASE WHEN NOT {CALLER_IS_PARTICIPANT1} AND $3::boolean IS NOT NULL
                                    THEN $3::boolean ELSE c.is_muted_by_participant2 END
WHERE c.id = $1
RETURNING c.id
"""

# Incoming messages of the conversation, unread, up to $2; the trigger adjusts the counter and
# emits the read receipt. The rows are locked first, in id order (LOCK_IN_ID_ORDER), then
# updated. visibility: vechat_conversations_select_participant,
# vechat_messages_update_participant; vechat.messages_guard (receiver: is_read false → true).
READ_CONVERSATION_SQL = f"""
WITH conv AS (
    SELECT c.organisation_id, c.id FROM public.vechat_conversations c WHERE c.id = $1
),
target AS MATERIALIZED (
    SELECT m.organisation_id, m.id
    FROM public.vechat_messages m JOIN conv
      ON m.organisation_id = conv.organisation_id AND m.conversation_id = conv.id
    WHERE m.receiver_id = (SELECT ctx.user_id FROM vechat.context ctx)
      AND m.receiver_type = (SELECT ctx.user_type FROM vechat.context ctx)
      AND NOT m.is_read
      AND m.id <= $2
    {LOCK_IN_ID_ORDER}
),
marked AS (
    UPDATE public.vechat_messages m SET is_read = true
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM conv) AS found, (SELECT count(*) FROM marked) AS marked
"""


async def read_conversation(
    conn: db.Transaction, conversation_id: int, up_to_message_id: int | None = None
) -> int | None:
    """Mark the caller's incoming messages of the conversation read, all or up to an id.

    Returns how many went from unread to read, or None when the conversation is not the
    caller's (404). One round trip; the trigger adjusts the counter and emits the read receipt.
    """
    row = await conn.fetchrow(
        READ_CONVERSATION_SQL, conversation_id, up_to_message_id or BIGINT_MAX
    )
    assert row is not None
    return int(row["marked"]) if row["found"] else None


# "Delete for me", step 1: the caller's hide flag on the messages up to the newest one that the
# unread counter still counts (received, unread, not deleted), so the counter drops by trigger.
# hidden_through (step 2) already hides every message up to it from the caller (MESSAGE_SHOWN);
# flagging the others too would write a row version and a `message.deleted` event per message of
# the history for nothing (measured: 0.44 s for a 2,000-message conversation, against a few ms).
# Messages first (locked in id order, LOCK_IN_ID_ORDER), the conversation row second -- the order
# every writer takes (the message triggers lock the conversation after the messages), so a
# concurrent read or send cannot deadlock with it. A message committed after this snapshot is
# newer than `newest` (new history).
# visibility: vechat_conversations_select_participant, vechat_messages_update_participant;
# vechat.messages_guard (receiver: false → true).
HIDE_MESSAGES_SQL = f"""
WITH conv AS (
    SELECT c.organisation_id, c.id, coalesce(c.last_message_id, 0) AS newest
    FROM public.vechat_conversations c WHERE c.id = $1
),
target AS MATERIALIZED (
    SELECT m.organisation_id, m.id
    FROM public.vechat_messages m JOIN conv
      ON m.organisation_id = conv.organisation_id AND m.conversation_id = conv.id
    WHERE m.id <= conv.newest
      AND m.receiver_id = (SELECT ctx.user_id FROM vechat.context ctx)
      AND m.receiver_type = (SELECT ctx.user_type FROM vechat.context ctx)
      AND NOT m.is_read AND m.deleted_at IS NULL AND NOT m.is_deleted_by_receiver
    {LOCK_IN_ID_ORDER}
),
hidden AS (
    UPDATE public.vechat_messages m
    SET is_deleted_by_receiver = true
    FROM target t
    WHERE m.organisation_id = t.organisation_id AND m.id = t.id
    RETURNING 1
)
SELECT conv.newest FROM conv
"""

# Step 2: the caller's hidden_through becomes that newest message (0 for an empty conversation,
# so that it leaves the list too). visibility: vechat_conversations_update_participant.
HIDE_CONVERSATION_SQL = f"""
UPDATE public.vechat_conversations c SET
    hidden_through_message_id_participant1 =
        CASE WHEN {CALLER_IS_PARTICIPANT1} THEN $2
             ELSE c.hidden_through_message_id_participant1 END,
    hidden_through_message_id_participant2 =
        CASE WHEN {CALLER_IS_PARTICIPANT1} THEN c.hidden_through_message_id_participant2
             ELSE $2 END
WHERE c.id = $1
"""


async def conversation(
    conn: db.Transaction, identity: Identity, conversation_id: int
) -> Conversation:
    """`fetch_conversation`, or `NotFound` when it is not the caller's."""
    found = await fetch_conversation(conn, identity, conversation_id)
    if found is None:
        raise NotFound("conversation", conversation_id)
    return found


async def open_with(
    conn: db.Transaction, identity: Identity, peer: Participant
) -> tuple[Conversation, bool]:
    """The caller's conversation with `peer`, created if needed (`open_conversation`), and
    whether it was."""
    conversation_id, created = await open_conversation(conn, identity, peer)
    return await conversation(conn, identity, conversation_id), created


async def update_flags(
    conn: db.Transaction, identity: Identity, conversation_id: int, data: ConversationUpdate
) -> Conversation:
    """Set the caller's own `archived` / `muted` (those given); `NotFound` unless theirs."""
    if data.archived is not msgspec.UNSET or data.muted is not msgspec.UNSET:
        archived = None if data.archived is msgspec.UNSET else data.archived
        muted = None if data.muted is msgspec.UNSET else data.muted
        if await conn.fetchval(UPDATE_FLAGS_SQL, conversation_id, archived, muted) is None:
            raise NotFound("conversation", conversation_id)
    return await conversation(conn, identity, conversation_id)


async def mark_conversation_read(
    conn: db.Transaction, identity: Identity, conversation_id: int, up_to_message_id: int | None
) -> Conversation:
    """`read_conversation`, then the conversation as it is now; `NotFound` unless theirs."""
    if await read_conversation(conn, conversation_id, up_to_message_id) is None:
        raise NotFound("conversation", conversation_id)
    return await conversation(conn, identity, conversation_id)


async def delete_for_me(conn: db.Transaction, conversation_id: int) -> None:
    """Hide the conversation's history from the caller (module docstring); the peer keeps it.

    `NotFound` unless it is the caller's conversation.
    """
    newest = await conn.fetchval(HIDE_MESSAGES_SQL, conversation_id)
    if newest is None:
        raise NotFound("conversation", conversation_id)
    await conn.execute(HIDE_CONVERSATION_SQL, conversation_id, newest)
