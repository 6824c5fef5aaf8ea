"""`/api/v1/settings`: the caller's chat preferences (chat/settings.py)."""

from __future__ import annotations

from litestar import Controller, get, patch
from litestar.params import JSONBody

from vechat_rls.api.dependencies import ConnDep, IdentityDep
from vechat_rls.chat import settings
from vechat_rls.chat.settings import UserSettings, UserSettingsUpdate


class SettingsController(Controller):
    path = "/settings"
    tags = ["settings"]

    @get(summary="The caller's settings (defaults until first changed)")
    async def get_settings(self, conn: ConnDep, identity: IdentityDep) -> UserSettings:
        return await settings.get_settings(conn, identity)

    @patch(summary="Change some of the caller's settings; unknown fields are refused")
    async def patch_settings(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[UserSettingsUpdate]
    ) -> UserSettings:
        return await settings.change_settings(conn, identity, data)
