"""Durable events read back under each recipient's own context and encoded as WebSocket frames.

One transaction per organisation and wake-up reads the events of every recipient that needs them
(`vechat.read_events`: one query, each recipient's rows under their own user context). The same
query first drops the recipients whose event cursor is not beyond what they were sent, so a
doorbell that names only the organisation (the coalesced doorbell, realtime/doorbell.py) costs one
index lookup per idle user, not one read. The frame `data` is built with the HTTP API's own
mapping of rows to JSON: the `Message` as that recipient sees it *now* (read in the same query,
mapped by `api/messages.message_columns` and `message_from_row`), the `Conversation`
(`api/conversations.fetch_conversation`, one more read as that recipient), or the read receipt
stored with the event. An event whose message
or conversation the recipient can no longer see (hidden for them since) still arrives — seq stays
gapless — with ids only: `{"id", "conversation_id"}` / `{"id"}`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from vechat_rls import db
from vechat_rls.api.conversations import Conversation, fetch_conversation
from vechat_rls.api.messages import message_columns, message_from_row
from vechat_rls.auth import Identity, UserType

UserKey = tuple[int, str, int]
"""(organisation_id, user_type, user_id): whom a socket, a doorbell or an event belongs to."""


def identity_of(key: UserKey) -> Identity:
    """A bare identity (no role, no name) to act as the user `key` in a transaction."""
    user_type: UserType = "personnel" if key[1] == "personnel" else "client"
    return Identity(organisation_id=key[0], user_type=user_type, user_id=key[2])


MESSAGE_EVENTS = frozenset({"message.created", "message.updated", "message.deleted"})


class EventFrame(msgspec.Struct, frozen=True):
    seq: int
    type: str
    data: Any


class Frame(msgspec.Struct, frozen=True, omit_defaults=True):
    """Every frame without a seq: ready, reset, pong, typing, presence, ack, error."""

    type: str
    data: Any = None
    client_id: str | None = None


_encoder = msgspec.json.Encoder()


def encode(frame: EventFrame | Frame) -> str:
    return _encoder.encode(frame).decode()


# visibility: vechat_events_select_recipient and vechat_messages_select_participant
# (db/policies/), applied per recipient inside vechat.read_events
# (db/schema/19_vechat_realtime.sql): the message and reply rows it returns were read as that
# recipient. The mapping shows them as that recipient (`message_columns`, the HTTP API's),
# reading only the organisation's presence flags (vechat_presence_select_organisation). The
# cursors of the transaction's organisation are readable by anyone of it
# (vechat_event_cursors_select_organisation).
# Skipping a recipient whose cursor is not beyond `since` skips nothing committed (a cursor and
# its events commit together); whatever commits later rings again.
READ_EVENTS_SQL = f"""
SELECT e.recipient_type AS event_recipient_type, e.recipient_id AS event_recipient_id,
       e.seq AS event_seq, e.event_type, e.conversation_id AS event_conversation_id,
       e.message_id AS event_message_id, e.data AS event_data,
       {message_columns("e.recipient_id", "e.recipient_type")}
FROM vechat.read_events(
    (SELECT coalesce(jsonb_agg(jsonb_build_array(w.user_type, w.user_id, w.since) ORDER BY w.n),
                     '[]'::jsonb)
     FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS w(user_type, user_id,
                                                                               since, n)
     JOIN public.vechat_event_cursors c ON c.user_type = w.user_type AND c.user_id = w.user_id
     WHERE c.last_seq > w.since),
    $4) AS e
LEFT JOIN LATERAL (SELECT (e.message).*) AS m ON true
LEFT JOIN LATERAL (SELECT (e.reply_to).*) AS r ON true
"""

# Switches the transaction to another user of the same organisation (transaction-local, like the
# context `db.tenant` sets): the HTTP read functions then see exactly what that user would.
ACT_AS_SQL = (
    "SELECT pg_catalog.set_config('vechat.user_id', $1, true), "
    "pg_catalog.set_config('vechat.user_type', $2, true), "
    "pg_catalog.set_config('vechat.role', '', true)"
)


async def read_frames(
    conn: db.Connection, organisation_id: int, wanted: list[tuple[UserKey, int]], limit: int
) -> tuple[dict[UserKey, list[tuple[int, str]]], set[UserKey]]:
    """Frames `(seq, text)` in seq order per user, for the events after their `since`.

    `conn` is a transaction acting as the first user of `wanted`, of `organisation_id` (its
    organisation is the only one readable). At most `limit` events per user; returns the frames
    and the users who may have more waiting. Message events cost nothing beyond the one query;
    a `conversation.updated` costs a read of that conversation as its recipient.
    """
    rows = await conn.fetch(
        READ_EVENTS_SQL,
        [key[1] for key, _ in wanted],
        [key[2] for key, _ in wanted],
        [since for _, since in wanted],
        limit,
    )
    by_user: dict[UserKey, list[db.Record]] = defaultdict(list)
    for row in rows:
        by_user[(organisation_id, row["event_recipient_type"], row["event_recipient_id"])].append(
            row
        )
    frames: dict[UserKey, list[tuple[int, str]]] = {}
    acting = wanted[0][0]  # vechat.read_events leaves the transaction acting as it found it
    for key, events in by_user.items():
        frames[key], switched = await _frames_of(conn, key, events, acting)
        acting = key if switched else acting
    more = {key for key, events in by_user.items() if len(events) >= limit}
    return frames, more


async def _frames_of(
    conn: db.Connection, key: UserKey, events: list[db.Record], acting: UserKey
) -> tuple[list[tuple[int, str]], bool]:
    conversation_ids = sorted(
        {e["event_conversation_id"] for e in events if e["event_type"] == "conversation.updated"}
    )
    conversations: dict[int, Conversation] = {}
    switched = False
    if conversation_ids:
        identity = identity_of(key)
        if key != acting:
            await conn.execute(ACT_AS_SQL, str(key[2]), key[1])
            switched = True
        for conversation_id in conversation_ids:
            conversation = await fetch_conversation(conn, identity, conversation_id)
            if conversation is not None:
                conversations[conversation_id] = conversation
    frames = []
    for e in events:
        kind, seq = e["event_type"], e["event_seq"]
        data: Any
        if kind in MESSAGE_EVENTS:
            if e["id"] is not None:
                data = message_from_row(e)
            else:  # no longer visible to this recipient: ids only, seq stays gapless
                data = {"id": e["event_message_id"], "conversation_id": e["event_conversation_id"]}
        elif kind == "conversation.updated":
            data = conversations.get(e["event_conversation_id"]) or {
                "id": e["event_conversation_id"]
            }
        else:  # messages.read: the receipt itself is the event's data
            data = e["event_data"]
        frames.append((seq, encode(EventFrame(seq, kind, data))))
    return frames, switched
