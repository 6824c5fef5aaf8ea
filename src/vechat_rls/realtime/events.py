"""Durable events read back under each recipient's own context and encoded as WebSocket frames.

One statement (`vechat.read_events`) reads the events of every recipient that needs them,
whatever their organisation. Frames carry the HTTP API's own shapes (chat/messages,
chat/conversations) as that recipient sees them now, or ids only for what they no longer see.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from vechat_rls import db
from vechat_rls.chat.conversations import Conversation, fetch_conversation
from vechat_rls.chat.messages import message_columns, message_from_row
from vechat_rls.identity import User

MESSAGE_EVENTS = frozenset({"message.created", "message.updated", "message.deleted"})
CONVERSATION_UPDATED = "conversation.updated"


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


# visibility: vechat.read_events (db/functions/19_vechat_realtime.sql) enters, per recipient, the
# context signed for them on this connection, so vechat_events_select_recipient and
# vechat_messages_select_participant (db/policies/) decide what each recipient gets: the message
# and reply rows it returns were read as that recipient. The mapping shows them as that recipient
# (chat/messages' `message_columns`) from those rows alone; it reads no table, since by the time
# it runs the function has left every context (vechat.leave).
READ_EVENTS_SQL = f"""
SELECT e.organisation_id AS event_organisation_id, e.recipient_type AS event_recipient_type,
       e.recipient_id AS event_recipient_id, e.seq AS event_seq, e.event_type,
       e.conversation_id AS event_conversation_id, e.message_id AS event_message_id,
       e.data AS event_data,
       {message_columns("e.recipient_id", "e.recipient_type", receipts_shown="e.receipts_shown")}
FROM vechat.read_events($1::jsonb, $2) AS e
LEFT JOIN LATERAL (SELECT (e.message).*) AS m ON true
LEFT JOIN LATERAL (SELECT (e.reply_to).*) AS r ON true
"""



async def read_frames(
    database: db.Database, wanted: list[tuple[User, int]], limit: int
) -> tuple[dict[User, list[tuple[int, str]]], set[User]]:
    """Frames `(seq, text)` in seq order per user, for the events after their `since`.

    One statement on its own (`db.fetch_alone`), whatever the number of users and organisations;
    `conversation.updated` events cost one more transaction per organisation, reading those
    conversations as their recipients. At most `limit` events per user; returns the frames and
    the users who may have more waiting.
    """
    def arguments(sign: db.Signer) -> tuple[list[list[object]], int]:
        # [[org, user_type, user_id, since, token]], each token signed for this connection
        return [[*key, since, sign(User(*key).acting())] for key, since in wanted], limit

    rows = await db.fetch_alone(database, READ_EVENTS_SQL, arguments)
    by_user: dict[User, list[db.Record]] = defaultdict(list)
    for row in rows:
        key = User(
            row["event_organisation_id"], row["event_recipient_type"], row["event_recipient_id"]
        )
        by_user[key].append(row)
    wanted_conversations: dict[int, dict[User, list[int]]] = defaultdict(dict)
    for key, events in by_user.items():
        updated = [e for e in events if e["event_type"] == CONVERSATION_UPDATED]
        if ids := {e["event_conversation_id"] for e in updated}:
            wanted_conversations[key.organisation_id][key] = sorted(ids)
    conversations: dict[User, dict[int, Conversation]] = {}
    for by_key in wanted_conversations.values():
        conversations.update(await _conversations(database, by_key))
    frames = {
        key: _frames_of(events, conversations.get(key, {})) for key, events in by_user.items()
    }
    more = {key for key, events in by_user.items() if len(events) >= limit}
    return frames, more


async def _conversations(
    database: db.Database, wanted: dict[User, list[int]]
) -> dict[User, dict[int, Conversation]]:
    """The conversations `wanted` by users of one organisation, each as that user sees them."""
    found: dict[User, dict[int, Conversation]] = {}
    keys = list(wanted)
    # Not READ ONLY: switching user enters a context, which writes the context row.
    async with db.tenant(database, keys[0].acting(), appends_events=False) as conn:
        for n, key in enumerate(keys):
            identity = key.acting()
            if n:
                await conn.act_as(identity)  # the chat read functions then see what they would
            found[key] = {}
            for conversation_id in wanted[key]:
                conversation = await fetch_conversation(conn, identity, conversation_id)
                if conversation is not None:
                    found[key][conversation_id] = conversation
    return found


def _frames_of(
    events: list[db.Record], conversations: dict[int, Conversation]
) -> list[tuple[int, str]]:
    frames = []
    for e in events:
        kind, seq = e["event_type"], e["event_seq"]
        data: Any
        if kind in MESSAGE_EVENTS:
            if e["id"] is not None:
                data = message_from_row(e)
            else:  # no longer visible to this recipient: ids only, seq stays gapless
                data = {"id": e["event_message_id"], "conversation_id": e["event_conversation_id"]}
        elif kind == CONVERSATION_UPDATED:
            data = conversations.get(e["event_conversation_id"]) or {
                "id": e["event_conversation_id"]
            }
        else:  # messages.read: the receipt itself is the event's data
            data = e["event_data"]
        frames.append((seq, encode(EventFrame(seq, kind, data))))
    return frames
