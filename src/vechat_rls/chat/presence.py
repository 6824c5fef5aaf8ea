"""Presence: the caller sets their status; others read it as `vechat.presence_view` says.

What others see is defined once, in SQL (db/schema/18_presence_view.sql): `show_online_status`
false means offline without `last_seen`; a status set here lasts 60 s unless renewed (a heartbeat)
or backed by a live WebSocket lease. A user of another organisation has no visible row and so
reads exactly like an unknown user: offline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from vechat_rls import db
from vechat_rls.identity import Identity, UserType

Status = Literal["online", "away", "busy", "offline"]
MAX_USERS = 200


class Presence(msgspec.Struct, frozen=True, kw_only=True):
    user_id: int
    user_type: UserType
    status: Status
    last_seen: datetime | None


class PresenceUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Status


# visibility: vechat_presence_insert_self, vechat_presence_update_self
# (db/policies/vechat_presence.sql) — the caller writes only their own row.
# When what others see changes (a new status, or one that had lapsed), the realtime doorbell
# `vechat_presence` rings ($4: the caller's ids, sealed by db/seal.py), like a WebSocket presence
# change, so peers on every server process get a `presence` frame; a user hiding their status
# rings nothing.
PUT_PRESENCE_SQL = """
WITH previous AS (
    SELECT p.status, p.updated_at > now() - interval '60 seconds' AS fresh
    FROM public.vechat_presence p
    WHERE p.user_id = $1 AND p.user_type = $2
),
upserted AS (
    INSERT INTO public.vechat_presence AS p
        (organisation_id, user_id, user_type, status, last_seen, updated_at)
    VALUES ((SELECT ctx.organisation_id FROM vechat.context ctx), $1, $2, $3, now(), now())
    ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE
    SET status = EXCLUDED.status, last_seen = now(), updated_at = now()
    RETURNING p.organisation_id, p.user_id, p.user_type, p.status, p.last_seen,
              p.show_online_status
)
SELECT u.user_id, u.user_type, u.status, u.last_seen,
       CASE WHEN u.show_online_status
                 AND NOT EXISTS (SELECT 1 FROM previous WHERE previous.status = u.status
                                                         AND previous.fresh)
            THEN pg_notify('vechat_presence', $4)
       END AS rung
FROM upserted u
"""

# In the order asked; no visible row (never seen, or another organisation) reads as offline.
# visibility: vechat_presence_organisation_isolation, vechat_presence_select_organisation
# (db/policies/vechat_presence.sql), through the security_invoker view vechat.presence_view.
PRESENCE_SQL = """
SELECT u.user_id, u.user_type,
       coalesce(v.status, 'offline') AS status, v.last_seen
FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS u(user_id, user_type, n)
LEFT JOIN vechat.presence_view v ON v.user_id = u.user_id AND v.user_type = u.user_type
ORDER BY u.n
"""


def _presence(row: db.Record) -> Presence:
    return Presence(
        user_id=row["user_id"],
        user_type=row["user_type"],
        status=row["status"],
        last_seen=row["last_seen"],
    )


async def set_presence(conn: db.Transaction, identity: Identity, status: Status) -> Presence:
    """Set the caller's status; it rings `vechat_presence` when what others see changes."""
    row = await conn.fetchrow(
        PUT_PRESENCE_SQL, identity.user_id, identity.user_type, status, _sealed(identity)
    )
    assert row is not None
    return _presence(row)


# A status chosen over a socket rings for the peers again, changed or not (unless the user hides
# their presence). visibility: vechat_presence_select_organisation — the caller's own row.
RING_PRESENCE_SQL = """
SELECT pg_catalog.pg_notify('vechat_presence', $3)
FROM public.vechat_presence p
WHERE p.user_type = $1 AND p.user_id = $2 AND p.show_online_status
"""


def _sealed(identity: Identity) -> str:
    """The caller's presence notice, as realtime/presence_frames.py reads it."""
    notice = {"o": identity.organisation_id, "u": [identity.user_type, identity.user_id]}
    return db.seal.seal("vechat_presence", notice)


async def ring_presence(conn: db.Transaction, identity: Identity) -> None:
    """Ring `vechat_presence` for the caller, so that peers read their presence again."""
    await conn.execute(RING_PRESENCE_SQL, identity.user_type, identity.user_id, _sealed(identity))


async def presence_of(conn: db.Transaction, users: list[tuple[int, str]]) -> list[Presence]:
    """The presence of `users` ((user_id, user_type)) as the caller may see it, in that order."""
    rows = await conn.fetch(
        PRESENCE_SQL, [user_id for user_id, _ in users], [kind for _, kind in users]
    )
    return [_presence(row) for row in rows]
