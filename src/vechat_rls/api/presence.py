"""`/api/v1/presence`: set the caller's status, read others' (chat/presence.py)."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import Controller, get, put
from litestar.params import JSONBody, Parameter

from vechat_rls.api.dependencies import ConnDep, IdentityDep
from vechat_rls.chat import presence
from vechat_rls.chat.errors import Invalid
from vechat_rls.chat.presence import Presence, PresenceUpdate
from vechat_rls.identity import BIGINT_MAX

_USER = re.compile(r"(personnel|client):([1-9][0-9]{0,18})")


def parse_users(value: str) -> list[tuple[int, str]]:
    """`personnel:5,client:3` → `[(5, "personnel"), (3, "client")]`, duplicates dropped."""
    users: dict[tuple[int, str], None] = {}
    for part in value.split(","):
        match = _USER.fullmatch(part.strip())
        if match is None or int(match.group(2)) > BIGINT_MAX:
            raise Invalid("users must be a comma-separated list of personnel:<id> or client:<id>")
        users[(int(match.group(2)), match.group(1))] = None
    if len(users) > presence.MAX_USERS:
        raise Invalid(f"at most {presence.MAX_USERS} users per request")
    return list(users)


class PresenceController(Controller):
    path = "/presence"
    tags = ["presence"]

    @put(summary="Set the caller's status (lasts 60 s for others unless renewed or on a socket)")
    async def put_presence(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[PresenceUpdate]
    ) -> Presence:
        return await presence.set_presence(conn, identity, data.status)

    @get(summary="Presence of some users as the caller may see it")
    async def get_presence(
        self,
        conn: ConnDep,
        users: Annotated[
            str,
            Parameter(
                description="Comma-separated `personnel:<id>` / `client:<id>`, at most 200",
                max_length=presence.MAX_USERS * 32,
            ),
        ],
    ) -> list[Presence]:
        return await presence.presence_of(conn, parse_users(users))
