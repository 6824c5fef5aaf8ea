"""Me: who the token says the caller is, plus their own directory row (created on first use)."""

from __future__ import annotations

import msgspec

from vechat_rls import db
from vechat_rls.identity import Identity, UserType


class Me(msgspec.Struct, frozen=True, kw_only=True):
    organisation_id: int
    user_id: int
    user_type: UserType
    role: str | None
    display_name: str | None
    email: str | None = None
    avatar_url: str | None = None


# Create-or-get in one statement: the outer SELECT runs on the statement's snapshot, so it sees
# the row only when it already existed, and `inserted` only when it did not.
# visibility: vechat_contacts_insert_self_or_admin, vechat_contacts_select_visible
# (db/policies/vechat_contacts.sql) — a user may create and read their own row.
OWN_CONTACT_SQL = """
WITH inserted AS (
    INSERT INTO public.vechat_contacts (organisation_id, user_id, user_type, display_name, role)
    VALUES ((SELECT ctx.organisation_id FROM vechat.context ctx), $1, $2, coalesce($3, ''), $4)
    ON CONFLICT (organisation_id, user_type, user_id) DO NOTHING
    RETURNING display_name, email, avatar_url
)
SELECT display_name, email, avatar_url FROM inserted
UNION ALL
SELECT display_name, email, avatar_url FROM public.vechat_contacts
WHERE user_id = $1 AND user_type = $2
LIMIT 1
"""


async def me(conn: db.Transaction, identity: Identity) -> Me:
    """The caller as the token says, with their contact row; a write (the row on first use)."""
    row = await conn.fetchrow(
        OWN_CONTACT_SQL,
        identity.user_id,
        identity.user_type,
        identity.display_name,
        identity.role,
    )
    return Me(
        organisation_id=identity.organisation_id,
        user_id=identity.user_id,
        user_type=identity.user_type,
        role=identity.role,
        display_name=(row and row["display_name"]) or identity.display_name,
        email=row["email"] if row else None,
        avatar_url=row["avatar_url"] if row else None,
    )
