"""Settings: the caller's chat preferences; no row yet means every default."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from vechat_rls import db
from vechat_rls.chat.errors import Invalid
from vechat_rls.identity import Identity

Theme = Literal["light", "dark", "auto"]
FontSize = Literal["small", "medium", "large"]
MAX_CUSTOM_SETTINGS_BYTES = 16 * 1024  # also vechat_user_settings_custom_settings_check
CUSTOM_SETTINGS_CHECK = "vechat_user_settings_custom_settings_check"
# Objects and arrays nested deeper are refused: JSON is decoded and encoded recursively (msgspec,
# here and in the pool's jsonb codec), and a thousand levels exhaust Python's stack.
MAX_CUSTOM_SETTINGS_DEPTH = 32


class UserSettings(msgspec.Struct, frozen=True, kw_only=True):
    email_notifications: bool = True
    push_notifications: bool = True
    sound_notifications: bool = True
    theme: Theme = "light"
    font_size: FontSize = "medium"
    show_online_status: bool = True
    show_read_receipts: bool = True
    custom_settings: dict[str, Any] = {}


DEFAULT_SETTINGS = UserSettings()


class UserSettingsUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only the fields given change; `custom_settings`, when given, replaces the whole object."""

    email_notifications: bool | msgspec.UnsetType = msgspec.UNSET
    push_notifications: bool | msgspec.UnsetType = msgspec.UNSET
    sound_notifications: bool | msgspec.UnsetType = msgspec.UNSET
    theme: Theme | msgspec.UnsetType = msgspec.UNSET
    font_size: FontSize | msgspec.UnsetType = msgspec.UNSET
    show_online_status: bool | msgspec.UnsetType = msgspec.UNSET
    show_read_receipts: bool | msgspec.UnsetType = msgspec.UNSET
    custom_settings: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


_FIELDS = tuple(UserSettings.__struct_fields__)
_COLUMNS = ", ".join(_FIELDS)

# visibility: vechat_user_settings_all_owner (db/policies/vechat_user_settings.sql) — only the
# caller's own row is readable, in the caller's organisation.
SETTINGS_SQL = f"""
SELECT {_COLUMNS} FROM public.vechat_user_settings WHERE user_id = $1 AND user_type = $2
"""

# Create-or-update in one statement; NULL means "not given" (no column is nullable). The AFTER
# trigger copies show_online_status to the caller's presence row.
# visibility: vechat_user_settings_all_owner (db/policies/vechat_user_settings.sql)
PATCH_SETTINGS_SQL = f"""
INSERT INTO public.vechat_user_settings AS s (organisation_id, user_id, user_type, {_COLUMNS})
VALUES ((SELECT ctx.organisation_id FROM vechat.context ctx), $1, $2,
        coalesce($3, true), coalesce($4, true), coalesce($5, true),
        coalesce($6, 'light'), coalesce($7, 'medium'),
        coalesce($8, true), coalesce($9, true), coalesce($10::jsonb, '{{}}'::jsonb))
ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE
SET email_notifications = coalesce($3, s.email_notifications),
    push_notifications = coalesce($4, s.push_notifications),
    sound_notifications = coalesce($5, s.sound_notifications),
    theme = coalesce($6, s.theme),
    font_size = coalesce($7, s.font_size),
    show_online_status = coalesce($8, s.show_online_status),
    show_read_receipts = coalesce($9, s.show_read_receipts),
    custom_settings = coalesce($10::jsonb, s.custom_settings)
RETURNING {_COLUMNS}
"""


def _settings(row: db.Record | None) -> UserSettings:
    if row is None:
        return DEFAULT_SETTINGS
    return UserSettings(**{name: row[name] for name in _FIELDS})


async def get_settings(conn: db.Transaction, identity: Identity) -> UserSettings:
    """The caller's settings (every default until first changed)."""
    return _settings(await conn.fetchrow(SETTINGS_SQL, identity.user_id, identity.user_type))


def _too_large() -> Invalid:
    # The size is the database's: the JSON text of the stored jsonb (`custom_settings::text`),
    # which has a space after every `:` and `,` — more than the compact JSON a client sends.
    return Invalid(
        f"custom_settings is larger than {MAX_CUSTOM_SETTINGS_BYTES} bytes as stored (JSON text "
        "with a space after every ':' and ',')",
        field="custom_settings",
        reason="too large",
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (iteratively)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


async def change_settings(
    conn: db.Transaction, identity: Identity, data: UserSettingsUpdate
) -> UserSettings:
    """Change the fields given; `custom_settings` over 16 KiB as stored, or nested more than
    32 levels, is `Invalid`."""
    custom = data.custom_settings
    if custom is not msgspec.UNSET:
        if _deeper_than(custom, MAX_CUSTOM_SETTINGS_DEPTH):
            raise Invalid(
                f"custom_settings nests more than {MAX_CUSTOM_SETTINGS_DEPTH} levels",
                field="custom_settings",
                reason="nested too deeply",
            )
        if len(msgspec.json.encode(custom)) > MAX_CUSTOM_SETTINGS_BYTES:
            raise _too_large()  # already over compact: no need to ask the database
    values = [getattr(data, name) for name in _FIELDS]
    try:
        row = await conn.fetchrow(
            PATCH_SETTINGS_SQL,
            identity.user_id,
            identity.user_type,
            *(None if value is msgspec.UNSET else value for value in values),
        )
    except db.PostgresError as exc:
        if getattr(exc, "constraint_name", None) == CUSTOM_SETTINGS_CHECK:
            raise _too_large() from None
        raise
    return _settings(row)
