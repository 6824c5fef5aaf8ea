"""Helpers for the conversation and message tests: a seeded organisation, HTTP shortcuts, SQL.

Each test module takes its own organisations (`new_organisation_ids`), seeds their directory as
the superuser, acts through HTTP with `Caller` tokens, and purges the organisations afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from tests.support import seed
from tests.support.api import Caller, assert_problem

API = "/api/v1"


@dataclass(frozen=True)
class Org:
    """One organisation's cast. The same user ids exist in every organisation seeded here."""

    id: int

    @property
    def staff(self) -> Caller:
        """Personnel 11, role commercial: any client without an assignment may talk to them."""
        return Caller(self.id, 11, "personnel", name="Staff")

    @property
    def client(self) -> Caller:
        """Client 12, assigned to staff 11."""
        return Caller(self.id, 12, "client", name="Client")

    @property
    def staff2(self) -> Caller:
        """Personnel 13, role support: not assigned to client 12, so invisible to it."""
        return Caller(self.id, 13, "personnel", name="Staff Two")

    @property
    def client2(self) -> Caller:
        """Client 14, nobody assigned: talks to the commercial staff."""
        return Caller(self.id, 14, "client", name="Client Two")

    @property
    def inactive(self) -> Caller:
        """Personnel 15, inactive in the directory."""
        return Caller(self.id, 15, "personnel", name="Gone")

    @property
    def staff3(self) -> Caller:
        """Personnel 16, role support: a third colleague."""
        return Caller(self.id, 16, "personnel", name="Staff Three")


def seed_directory(admin_url: str, org: Org) -> None:
    rows = [
        (org.staff, "Staff One", "commercial", True, []),
        (org.client, "Client One", None, True, [11]),
        (org.staff2, "Staff Two", "support", True, []),
        (org.client2, "Client Two", None, True, []),
        (org.inactive, "Gone Staff", "commercial", False, []),
        (org.staff3, "Staff Three", "support", True, []),
    ]
    with psycopg.connect(admin_url) as conn:
        for caller, name, role, active, assigned in rows:
            conn.execute(
                """INSERT INTO vechat_contacts (organisation_id, user_id, user_type, display_name,
                                               role, active, assigned_personnel)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (org.id, caller.user_id, caller.user_type, name, role, active, assigned),
            )


def admin_sql(admin_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run `sql` as the superuser (row-level security does not apply) and return its rows."""
    with psycopg.connect(admin_url) as conn:
        cursor = conn.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description else []


def insert_attachment(
    admin_url: str, uploader: Caller, file_type: str, data: bytes = b"\x89PNG...."
) -> int:
    """An uploaded file of `uploader` (seed.insert_attachment, on a connection of its own)."""
    with psycopg.connect(admin_url) as conn:
        return seed.insert_attachment(
            conn, uploader.organisation_id, uploader.user, data, file_type=file_type
        )


async def open_conversation(client: AsyncTestClient[Any], caller: Caller, peer: Caller) -> int:
    response = await client.post(
        f"{API}/conversations", json={"peer": peer.participant}, headers=caller.headers
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


async def send(
    client: AsyncTestClient[Any],
    caller: Caller,
    conversation_id: int,
    body: str | None = "hello",
    *,
    status: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    payload = {"body": body, **fields} if body is not None else fields
    response = await client.post(
        f"{API}/conversations/{conversation_id}/messages", json=payload, headers=caller.headers
    )
    if status >= 400:
        return assert_problem(response, status)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_json(
    client: AsyncTestClient[Any], caller: Caller, path: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(f"{API}{path}", params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def conversation(
    client: AsyncTestClient[Any], caller: Caller, conversation_id: int
) -> dict[str, Any]:
    return await get_json(client, caller, f"/conversations/{conversation_id}")


async def page_ids(
    client: AsyncTestClient[Any], caller: Caller, conversation_id: int, **params: Any
) -> list[int]:
    page = await get_json(client, caller, f"/conversations/{conversation_id}/messages", **params)
    return [m["id"] for m in page["items"]]


async def listed_ids(client: AsyncTestClient[Any], caller: Caller, **params: Any) -> list[int]:
    """Every conversation id of the caller's list (all pages)."""
    ids: list[int] = []
    cursor = None
    while True:
        extra: dict[str, Any] = {"cursor": cursor} if cursor else {}
        page = await get_json(client, caller, "/conversations", **params, **extra)
        ids += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
