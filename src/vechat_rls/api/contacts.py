"""`/api/v1/contacts`: the directory a caller may talk to (chat/contacts.py), and its admin sync."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, put
from litestar.params import JSONBody, Parameter

from vechat_rls.api.dependencies import ConnDep, IdentityDep
from vechat_rls.api.problems import problem_responses
from vechat_rls.chat import contacts
from vechat_rls.chat.contacts import ContactPage, ContactsUpsert, UpsertResult


class ContactsController(Controller):
    path = "/contacts"
    tags = ["contacts"]

    @get(summary="Contacts the caller may talk to, searchable by name and email")
    async def list_contacts(
        self,
        conn: ConnDep,
        q: Annotated[
            str | None,
            Parameter(
                description="Case- and accent-insensitive substring of name or email",
                max_length=contacts.MAX_QUERY_CHARS,
            ),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=contacts.MAX_LIMIT)] = contacts.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Parameter(max_length=contacts.MAX_CURSOR_CHARS)] = None,
    ) -> ContactPage:
        return await contacts.contact_page(conn, q, cursor, limit)

    @put(
        summary="Admin: upsert up to 1000 directory rows of the caller's own organisation",
        responses=problem_responses(403),
    )
    async def upsert_contacts(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[ContactsUpsert]
    ) -> UpsertResult:
        return await contacts.upsert_contacts(conn, identity, data.items)
