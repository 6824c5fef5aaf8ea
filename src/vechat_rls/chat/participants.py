"""Participants: the `Participant` shape and the one conversation of a pair (create-or-get).

Both `POST /conversations` and `POST /messages` (send by receiver) open a conversation through
`open_conversation`, so the rule "a peer must be a visible, active contact" and the stored order
of a pair live in one place.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from vechat_rls import db
from vechat_rls.chat.contacts import VISIBLE_CONTACT_SQL
from vechat_rls.chat.errors import Invalid, NotFound
from vechat_rls.identity import BIGINT_MAX, Identity, UserType

Id = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
"""An id in a request: a positive bigint (0, negative or huge → 400, never a database error)."""


class Participant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One side of a conversation: `{"user_id": int, "user_type": "personnel"|"client"}`."""

    user_id: Id
    user_type: UserType


def stored_pair(a: Participant, b: Participant) -> tuple[Participant, Participant]:
    """`a` and `b` in the order the table stores them: by (user_id, user_type), lower first.

    Same order as the check `vechat_conversations_participants_order_check`: ids first, then
    'client' < 'personnel' for equal ids.
    """
    return (a, b) if (a.user_id, a.user_type) < (b.user_id, b.user_type) else (b, a)


# Create-or-get in one statement. `existing` and the peer check run on the statement's snapshot;
# the insert happens only when there is no conversation yet and the caller may talk to the peer
# ($1, $2) — VISIBLE_CONTACT_SQL (chat/contacts.py) is that rule, embedded unchanged. A concurrent
# creator of the same pair makes ON CONFLICT do nothing: the caller then looks again
# (`CONVERSATION_OF_PAIR_SQL`, a new snapshot that sees the winner's row).
# visibility: vechat_conversations_select_participant, vechat_conversations_insert_participant
# (db/policies/vechat_conversations.sql) — the caller reads and creates only their own pairs.
OPEN_CONVERSATION_SQL = f"""
WITH existing AS (
    SELECT c.id FROM public.vechat_conversations c
    WHERE c.participant1_id = $3 AND c.participant1_type = $4
      AND c.participant2_id = $5 AND c.participant2_type = $6
),
inserted AS (
    INSERT INTO public.vechat_conversations
        (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type)
    SELECT (SELECT ctx.organisation_id FROM vechat.context ctx), $3, $4, $5, $6
    WHERE NOT EXISTS (SELECT 1 FROM existing)
      AND EXISTS ({VISIBLE_CONTACT_SQL})
    ON CONFLICT (organisation_id, participant1_id, participant1_type,
                 participant2_id, participant2_type) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM existing) AS existing_id, (SELECT id FROM inserted) AS created_id
"""

CONVERSATION_OF_PAIR_SQL = """
SELECT c.id FROM public.vechat_conversations c
WHERE c.participant1_id = $1 AND c.participant1_type = $2
  AND c.participant2_id = $3 AND c.participant2_type = $4
"""


async def open_conversation(
    conn: db.Transaction, identity: Identity, peer: Participant
) -> tuple[int, bool]:
    """The id of the caller's conversation with `peer`, created if needed; and whether it was.

    One round trip (two when another request creates the same pair at the same moment, or the
    peer is refused). Talking to oneself is `Invalid` (400). Starting a conversation needs a
    peer the caller may talk to (chat/contacts.py: visible and active), else `NotFound` (404) —
    the same answer as for a user who does not exist or belongs to another organisation. An
    existing conversation is returned to its participant whatever the directory says now: they
    can reach it by id anyway, and a client must be able to answer staff who wrote first.
    """
    me = Participant(user_id=identity.user_id, user_type=identity.user_type)
    if me == peer:
        raise Invalid("a conversation needs two different participants")
    first, second = stored_pair(me, peer)
    pair = (first.user_id, first.user_type, second.user_id, second.user_type)
    row = await conn.fetchrow(OPEN_CONVERSATION_SQL, peer.user_id, peer.user_type, *pair)
    assert row is not None
    if row["created_id"] is not None:
        return int(row["created_id"]), True
    if row["existing_id"] is not None:
        return int(row["existing_id"]), False
    existing = await conn.fetchval(CONVERSATION_OF_PAIR_SQL, *pair)
    if existing is None:
        raise NotFound("user", f"{peer.user_type}:{peer.user_id}")
    return int(existing), False
