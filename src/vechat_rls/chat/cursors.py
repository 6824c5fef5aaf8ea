"""Opaque keyset cursors, the one codec of every list: a tagged JSON array in URL-safe base64.

A cursor names the last row a page ended on (its sort key), never an offset, so a page is stable
under concurrent inserts. The tag ties a cursor to the list that issued it: a conversation cursor
given to the search is as invalid as garbage, and both are `Invalid` (400).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from vechat_rls.chat.errors import Invalid
from vechat_rls.identity import BIGINT_MAX

MAX_CURSOR_CHARS = 200


def encode(tag: str, *values: int | str) -> str:
    """`values` (integers and strings) under `tag`, as an opaque string."""
    raw = msgspec.json.encode([tag, *values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(
    cursor: str, tag: str, *kinds: type[int] | type[str], max_chars: int = MAX_CURSOR_CHARS
) -> tuple[Any, ...]:
    """The values `encode(tag, …)` packed, one of each of `kinds` (integers: 0 to the bigint
    maximum); `Invalid` for anything else."""
    try:
        if len(cursor) > max_chars:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value: Any = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise Invalid("cursor is invalid") from None
    if (
        not isinstance(value, list)
        or len(value) != len(kinds) + 1
        or value[0] != tag
        or not all(_fits(v, kind) for v, kind in zip(value[1:], kinds, strict=True))
    ):
        raise Invalid("cursor is invalid")
    return tuple(value[1:])


def _fits(value: Any, kind: type[int] | type[str]) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value <= BIGINT_MAX
    return type(value) is str


def timestamp_key(value: datetime) -> int:
    """A timestamp as integer microseconds since the epoch: exact, unlike a float."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp_from_key(key: int) -> datetime:
    """The inverse of `timestamp_key`; `Invalid` when out of the representable range."""
    try:
        return datetime.fromtimestamp(key // 1_000_000, UTC).replace(microsecond=key % 1_000_000)
    except (OverflowError, OSError, ValueError):
        raise Invalid("cursor is invalid") from None
