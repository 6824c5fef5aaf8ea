"""`/api/v1/presence`: the caller sets their status; others read it as `vechat.presence_view` says.

What others see is defined once, in SQL (db/schema/18_presence_view.sql): `show_online_status`
false means offline without `last_seen`; a status set here lasts 60 s unless renewed (a heartbeat)
or backed by a live WebSocket lease. A user of another organisation has no visible row and so
reads exactly like an unknown user: offline.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, put
from litestar.params import JSONBody, Parameter

from vechat_rls import db
from vechat_rls.api.errors import BadRequest
from vechat_rls.api.security import ConnDep, IdentityDep
from vechat_rls.identity import BIGINT_MAX, UserType

Status = Literal["online", "away", "busy", "offline"]
MAX_USERS = 200
_USER = re.compile(r"(personnel|client):([1-9][0-9]{0,18})")


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
# `vechat_presence` rings with ids only, like a WebSocket presence change, so peers on every
# server process get a `presence` frame; a user hiding their status rings nothing.
PUT_PRESENCE_SQL = """
WITH previous AS (
    SELECT p.status, p.updated_at > now() - interval '60 seconds' AS fresh
    FROM public.vechat_presence p
    WHERE p.user_id = $1 AND p.user_type = $2
),
upserted AS (
    INSERT INTO public.vechat_presence AS p
        (organisation_id, user_id, user_type, status, last_seen, updated_at)
    VALUES ((SELECT vechat.current_organisation_id()), $1, $2, $3, now(), now())
    ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE
    SET status = EXCLUDED.status, last_seen = now(), updated_at = now()
    RETURNING p.organisation_id, p.user_id, p.user_type, p.status, p.last_seen,
              p.show_online_status
)
SELECT u.user_id, u.user_type, u.status, u.last_seen,
       CASE WHEN u.show_online_status
                 AND NOT EXISTS (SELECT 1 FROM previous WHERE previous.status = u.status
                                                         AND previous.fresh)
            THEN pg_notify('vechat_presence', json_build_object(
                     'o', u.organisation_id, 'u', json_build_array(u.user_type, u.user_id))::text)
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


def parse_users(value: str) -> list[tuple[int, str]]:
    """`personnel:5,client:3` → `[(5, "personnel"), (3, "client")]`, duplicates dropped."""
    users: dict[tuple[int, str], None] = {}
    for part in value.split(","):
        match = _USER.fullmatch(part.strip())
        if match is None or int(match.group(2)) > BIGINT_MAX:
            raise BadRequest(
                "users must be a comma-separated list of personnel:<id> or client:<id>"
            )
        users[(int(match.group(2)), match.group(1))] = None
    if len(users) > MAX_USERS:
        raise BadRequest(f"at most {MAX_USERS} users per request")
    return list(users)


def _presence(row: db.Record) -> Presence:
    return Presence(
        user_id=row["user_id"],
        user_type=row["user_type"],
        status=row["status"],
        last_seen=row["last_seen"],
    )


class PresenceController(Controller):
    path = "/presence"
    tags = ["presence"]

    @put(summary="Set the caller's status (lasts 60 s for others unless renewed or on a socket)")
    async def put_presence(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[PresenceUpdate]
    ) -> Presence:
        row = await conn.fetchrow(
            PUT_PRESENCE_SQL, identity.user_id, identity.user_type, data.status
        )
        assert row is not None
        return _presence(row)

    @get(summary="Presence of some users as the caller may see it")
    async def get_presence(
        self,
        conn: ConnDep,
        users: Annotated[
            str,
            Parameter(
                description="Comma-separated `personnel:<id>` / `client:<id>`, at most 200",
                max_length=MAX_USERS * 32,
            ),
        ],
    ) -> list[Presence]:
        wanted = parse_users(users)
        rows = await conn.fetch(
            PRESENCE_SQL, [user_id for user_id, _ in wanted], [kind for _, kind in wanted]
        )
        return [_presence(row) for row in rows]
