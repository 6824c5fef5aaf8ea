"""Opaque keyset cursors: a list's position as a tagged JSON array in URL-safe base64.

A cursor names the last row a page ended on (its sort key), never an offset, so a page is stable
under concurrent inserts. The tag ties a cursor to the list that issued it: a conversation cursor
given to the search is as invalid as garbage, and both answer 400.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from vechat_rls.api.errors import BadRequest
from vechat_rls.identity import BIGINT_MAX

MAX_CURSOR_CHARS = 200


def encode(tag: str, *values: int) -> str:
    """`values` (integers) under `tag`, as an opaque string."""
    raw = msgspec.json.encode([tag, *values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, tag: str, count: int) -> tuple[int, ...]:
    """The `count` positive integers `encode(tag, …)` packed; `BadRequest` for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value: Any = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest("cursor is invalid") from None
    if (
        not isinstance(value, list)
        or len(value) != count + 1
        or value[0] != tag
        or not all(type(v) is int and 0 <= v <= BIGINT_MAX for v in value[1:])
    ):
        raise BadRequest("cursor is invalid")
    return tuple(value[1:])


def timestamp_key(value: datetime) -> int:
    """A timestamp as integer microseconds since the epoch: exact, unlike a float."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp_from_key(key: int) -> datetime:
    """The inverse of `timestamp_key`; `BadRequest` when out of the representable range."""
    try:
        return datetime.fromtimestamp(key // 1_000_000, UTC).replace(microsecond=key % 1_000_000)
    except (OverflowError, OSError, ValueError):
        raise BadRequest("cursor is invalid") from None
