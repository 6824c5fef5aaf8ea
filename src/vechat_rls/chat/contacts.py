"""Contacts: the directory a caller may talk to, and the admin's bulk sync of it.

Who may talk to whom is one rule, `VISIBLE_CONTACT_PREDICATE`, used by the list here and by
`visible_contact()`, which other resources call before starting a conversation with a peer:

* personnel see every active contact of their organisation;
* a client sees only active personnel: those listed in its own row's `assigned_personnel`, or, when
  that list is empty (or the client has no row yet), those whose role is `commercial`;
* nobody lists themselves.

The organisation is never named here: `vechat_contacts_organisation_isolation` keeps every
statement inside the caller's organisation, and `vechat_contacts_select_visible` already hides
other clients from a client (db/policies/vechat_contacts.sql). The finer client rule above is a
query rule on top of those policies.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from vechat_rls import db
from vechat_rls.chat import cursors
from vechat_rls.chat.errors import Forbidden, Invalid
from vechat_rls.identity import BIGINT_MAX, USER_TYPES, Identity, UserType

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_UPSERT_ITEMS = 1000
MAX_QUERY_CHARS = 200
MAX_CURSOR_CHARS = 1000  # a cursor holds a display name (up to 200 characters)
CURSOR_TAG = "contacts"

UserId = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """A directory entry as the API shows it."""

    user_id: int
    user_type: UserType
    display_name: str
    email: str | None
    avatar_url: str | None
    role: str | None
    active: bool


class ContactPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Contact]
    next_cursor: str | None


class ContactUpsert(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One directory row as the ERP sends it; the whole row (omitted fields take their defaults)."""

    user_id: UserId
    user_type: UserType
    display_name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    avatar_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    role: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    active: bool = True
    assigned_personnel: Annotated[list[UserId], msgspec.Meta(max_length=1000)] = []


class ContactsUpsert(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    items: Annotated[list[ContactUpsert], msgspec.Meta(max_length=MAX_UPSERT_ITEMS)]


class UpsertResult(msgspec.Struct, frozen=True, kw_only=True):
    """How many rows `PUT /contacts` wrote: `upserted = created + updated`."""

    upserted: int
    created: int
    updated: int


# The one definition of "the caller may talk to contact c" (alias c), for a caller whose own
# `assigned_personnel` is available as `me.assigned` (see `_ME_CTE`).
# visibility: vechat_contacts_organisation_isolation, vechat_contacts_select_visible
# (db/policies/vechat_contacts.sql) — the organisation, and no other client for a client.
VISIBLE_CONTACT_PREDICATE = """
c.active
AND NOT (c.user_id = (SELECT ctx.user_id FROM vechat.context ctx)
         AND c.user_type = (SELECT ctx.user_type FROM vechat.context ctx))
AND ((SELECT ctx.user_type FROM vechat.context ctx) = 'personnel'
     OR (c.user_type = 'personnel'
         AND CASE WHEN cardinality(me.assigned) = 0 THEN c.role = 'commercial'
                  ELSE c.user_id = ANY (me.assigned) END))
"""

# The caller's own assignment list; no row yet means none assigned.
_ME_CTE = """
WITH me AS (
    SELECT coalesce((SELECT o.assigned_personnel FROM public.vechat_contacts o
                     WHERE o.user_id = (SELECT ctx.user_id FROM vechat.context ctx)
                       AND o.user_type = (SELECT ctx.user_type FROM vechat.context ctx)),
                    '{}'::bigint[]) AS assigned
)
"""

_COLUMNS = "c.user_id, c.user_type, c.display_name, c.email, c.avatar_url, c.role, c.active"

# Composed once at import from the fixed fragments above, so that the list and the single lookup
# can never disagree about who is visible. No request data is ever part of the text.
VISIBLE_CONTACT_SQL = f"""{_ME_CTE}
SELECT {_COLUMNS}
FROM public.vechat_contacts c, me
WHERE c.user_id = $1 AND c.user_type = $2
  AND {VISIBLE_CONTACT_PREDICATE}
"""
"""One visible contact by (`$1` user_id, `$2` user_type); no row when the caller may not see it."""

# Keyset page ordered by (display_name, user_type, user_id); `$1` the LIKE pattern or NULL,
# `$2..$4` the last row of the previous page or NULLs, `$5` the page size + 1.
CONTACTS_PAGE_SQL = f"""{_ME_CTE}
SELECT {_COLUMNS}
FROM public.vechat_contacts c, me
WHERE {VISIBLE_CONTACT_PREDICATE}
  AND ($1::text IS NULL OR c.search_text LIKE '%' || lower(vechat.unaccent($1::text)) || '%')
  AND ($2::text IS NULL
       OR (c.display_name, c.user_type, c.user_id) > ($2::text, $3::text, $4::bigint))
ORDER BY c.display_name, c.user_type, c.user_id
LIMIT $5
"""

# Bulk upsert from a JSON array; `xmax = 0` marks a row this statement inserted.
# visibility: vechat_contacts_insert_self_or_admin, vechat_contacts_update_self_or_admin
# (db/policies/vechat_contacts.sql) — an admin writes any row of the transaction's organisation,
# and vechat_contacts_organisation_isolation's WITH CHECK refuses any other organisation.
UPSERT_CONTACTS_SQL = """
INSERT INTO public.vechat_contacts AS c
    (organisation_id, user_id, user_type, display_name, email, avatar_url, role, active,
     assigned_personnel)
SELECT (SELECT ctx.organisation_id FROM vechat.context ctx), r.user_id, r.user_type, r.display_name,
       r.email, r.avatar_url, r.role, r.active, r.assigned_personnel
FROM jsonb_to_recordset($1::jsonb) AS r(user_id bigint, user_type text, display_name text,
                                        email text, avatar_url text, role text, active boolean,
                                        assigned_personnel bigint[])
ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE
SET display_name = EXCLUDED.display_name,
    email = EXCLUDED.email,
    avatar_url = EXCLUDED.avatar_url,
    role = EXCLUDED.role,
    active = EXCLUDED.active,
    assigned_personnel = EXCLUDED.assigned_personnel
RETURNING (xmax = 0) AS created
"""


async def visible_contact(conn: db.Transaction, user_id: int, user_type: str) -> Contact | None:
    """The contact (`user_id`, `user_type`) if the caller of `conn` may talk to it, else None.

    Use it for "the peer must be a visible, active contact": None means answer 404, exactly as
    for a user who does not exist or belongs to another organisation.
    """
    row = await conn.fetchrow(VISIBLE_CONTACT_SQL, user_id, user_type)
    return None if row is None else _contact(row)


def _contact(row: db.Record) -> Contact:
    return Contact(
        user_id=row["user_id"],
        user_type=row["user_type"],
        display_name=row["display_name"],
        email=row["email"],
        avatar_url=row["avatar_url"],
        role=row["role"],
        active=row["active"],
    )


def like_pattern(q: str) -> str:
    r"""`q` with LIKE's wildcards escaped (`\` is the default escape character)."""
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def contact_page(
    conn: db.Transaction, q: str | None, cursor: str | None, limit: int = DEFAULT_LIMIT
) -> ContactPage:
    """The contacts the caller may talk to, by name; `q` a substring of name or email."""
    after: tuple[Any, ...] = (None, None, None)
    if cursor is not None:
        after = cursors.decode(cursor, CURSOR_TAG, str, str, int, max_chars=MAX_CURSOR_CHARS)
        if after[1] not in USER_TYPES or after[2] < 1:
            raise Invalid("cursor is invalid")
    pattern = like_pattern(q.strip()) if q and q.strip() else None
    rows = await conn.fetch(CONTACTS_PAGE_SQL, pattern, *after, limit + 1)
    items = [_contact(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = cursors.encode(CURSOR_TAG, last.display_name, last.user_type, last.user_id)
    return ContactPage(items=items, next_cursor=next_cursor)


async def upsert_contacts(
    conn: db.Transaction, identity: Identity, items: list[ContactUpsert]
) -> UpsertResult:
    """Write directory rows of the caller's organisation; an admin's only (`Forbidden`).

    Every row is written whole (omitted fields take their defaults); a user listed twice is
    `Invalid`, naming both places.
    """
    if not identity.is_admin:
        raise Forbidden("only an admin may change the contact directory")
    seen: dict[tuple[str, int], int] = {}
    for index, item in enumerate(items):
        key = (item.user_type, item.user_id)
        if key in seen:
            raise Invalid(
                f"items[{index}] repeats {item.user_type}:{item.user_id} "
                f"(first at items[{seen[key]}])"
            )
        seen[key] = index
    if not items:
        return UpsertResult(upserted=0, created=0, updated=0)
    rows = await conn.fetch(UPSERT_CONTACTS_SQL, msgspec.to_builtins(items))
    created = sum(1 for row in rows if row["created"])
    return UpsertResult(upserted=len(rows), created=created, updated=len(rows) - created)
