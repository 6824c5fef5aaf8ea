"""Stats: how many messages the caller sent and received, in how many conversations.

Counts every message the caller sent or received (tombstones included: they were sent) and every
conversation the caller takes part in, over the rows row-level security lets the caller see.
"""

from __future__ import annotations

import msgspec

from vechat_rls import db
from vechat_rls.identity import Identity


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    sent_messages: int
    received_messages: int
    conversations: int


# visibility: vechat_messages_select_participant (db/policies/vechat_messages.sql) and
# vechat_conversations_select_participant (db/policies/vechat_conversations.sql) — only the
# caller's own messages and conversations, of the caller's organisation, are counted.
STATS_SQL = """
SELECT (SELECT count(*) FROM public.vechat_messages
        WHERE sender_id = $1 AND sender_type = $2) AS sent_messages,
       (SELECT count(*) FROM public.vechat_messages
        WHERE receiver_id = $1 AND receiver_type = $2) AS received_messages,
       (SELECT count(*) FROM public.vechat_conversations) AS conversations
"""


async def stats(conn: db.Transaction, identity: Identity) -> Stats:
    """The caller's message and conversation counts."""
    row = await conn.fetchrow(STATS_SQL, identity.user_id, identity.user_type)
    assert row is not None
    return Stats(
        sent_messages=row["sent_messages"],
        received_messages=row["received_messages"],
        conversations=row["conversations"],
    )
