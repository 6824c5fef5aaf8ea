"""`GET /api/v1/me`: who the token says the caller is, plus their own directory row (chat/me.py)."""

from __future__ import annotations

from litestar import Controller, get

from vechat_rls.api.dependencies import DatabaseDep, IdentityDep
from vechat_rls.chat import me
from vechat_rls.chat.me import Me


class MeController(Controller):
    path = "/me"
    tags = ["me"]

    @get(summary="The caller: identity from the token and their contact row (created on first use)")
    async def get_me(self, identity: IdentityDep, database: DatabaseDep) -> Me:
        # A GET that may insert (first use), so not the read-only `conn` of GET requests.
        async with database.tenant(identity) as conn:
            return await me.me(conn, identity)
