"""Durable events read back under each recipient's own context and encoded as WebSocket frames.

One transaction per organisation and wake-up reads the events of every recipient that needs them
(`vechat.read_events`: one query, each recipient's rows under their own user context). The same
query first drops the recipients whose event cursor is not beyond what they were sent, so a
doorbell that names only the organisation (the coalesced doorbell, realtime/doorbell.py) costs one
index lookup per idle user, not one read. The frame
`data` is then built with the same functions as the HTTP API (one mapping of rows to JSON): the
`Message` (`api/messages.fetch_messages`) or `Conversation` (`api/conversations.fetch_conversation`)
as that recipient sees it *now*, or the read receipt stored with the event. An event whose message
or conversation the recipient can no longer see (hidden for them since) still arrives — seq stays
gapless — with ids only: `{"id", "conversation_id"}` / `{"id"}`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from vechat_rls import db
from vechat_rls.api.conversations import Conversation, fetch_conversation
from vechat_rls.api.messages import Message, fetch_messages
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


# visibility: vechat_events_select_recipient (db/policies/vechat_events.sql), applied per recipient
# inside vechat.read_events (db/schema/19_vechat_realtime.sql); the cursors of the transaction's
# organisation are readable by anyone of it (vechat_event_cursors_select_organisation).
# Skipping a recipient whose cursor is not beyond `since` skips nothing committed (a cursor and
# its events commit together); whatever commits later rings again.
READ_EVENTS_SQL = """
SELECT e.* FROM vechat.read_events(
    (SELECT coalesce(jsonb_agg(jsonb_build_array(w.user_type, w.user_id, w.since) ORDER BY w.n),
                     '[]'::jsonb)
     FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS w(user_type, user_id,
                                                                               since, n)
     JOIN public.vechat_event_cursors c ON c.user_type = w.user_type AND c.user_id = w.user_id
     WHERE c.last_seq > w.since),
    $4) AS e
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
    and the users who may have more waiting.
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
        by_user[(organisation_id, row["recipient_type"], row["recipient_id"])].append(row)
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
    message_ids = sorted(
        {e["message_id"] for e in events if e["event_type"] in MESSAGE_EVENTS and e["message_id"]}
    )
    conversation_ids = sorted(
        {e["conversation_id"] for e in events if e["event_type"] == "conversation.updated"}
    )
    messages: dict[int, Message] = {}
    conversations: dict[int, Conversation] = {}
    switched = False
    if message_ids or conversation_ids:
        identity = identity_of(key)
        if key != acting:
            await conn.execute(ACT_AS_SQL, str(key[2]), key[1])
            switched = True
        if message_ids:
            messages = {m.id: m for m in await fetch_messages(conn, message_ids)}
        for conversation_id in conversation_ids:
            conversation = await fetch_conversation(conn, identity, conversation_id)
            if conversation is not None:
                conversations[conversation_id] = conversation
    frames = []
    for e in events:
        kind = e["event_type"]
        data: Any
        if kind in MESSAGE_EVENTS:
            data = messages.get(e["message_id"]) or {
                "id": e["message_id"],
                "conversation_id": e["conversation_id"],
            }
        elif kind == "conversation.updated":
            data = conversations.get(e["conversation_id"]) or {"id": e["conversation_id"]}
        else:  # messages.read: the receipt itself is the event's data
            data = e["data"]
        frames.append((e["seq"], encode(EventFrame(e["seq"], kind, data))))
    return frames, switched
