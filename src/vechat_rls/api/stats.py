"""`GET /api/v1/stats`: the caller's message and conversation counts (chat/stats.py)."""

from __future__ import annotations

from litestar import Controller, get

from vechat_rls.api.dependencies import ConnDep, IdentityDep
from vechat_rls.chat import stats
from vechat_rls.chat.stats import Stats


class StatsController(Controller):
    path = "/stats"
    tags = ["stats"]

    @get(summary="The caller's message and conversation counts")
    async def get_stats(self, conn: ConnDep, identity: IdentityDep) -> Stats:
        return await stats.stats(conn, identity)
