"""Signed tenant contexts: the key the service signs with, and the token a transaction enters.

The database accepts a tenant context only from `vechat.enter(token)` (db/functions/00_context.sql),
for a token signed with a key it holds where `vechat_app` cannot read it. The token binds the
context to one backend (its pid and start time: copied to another connection it is refused), to
a counter that only goes up (entered once; an older one is refused) and to a short expiry:

    v1|key_id|organisation_id|user_id|user_type|role|pid|backend_start_us|counter|expires_s|hmac

The key comes from `VECHAT_CONTEXT_KEY`: `key_id:hex` (32 to 64 random bytes), or several
separated by commas during a rotation — the first signs, every one opens notifications
(db/seal.py). docs/dba.md has the procedure.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

from vechat_rls.identity import ROLE_PATTERN, USER_TYPES, Identity

KEY_VARIABLE = "VECHAT_CONTEXT_KEY"
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
TOKEN_TTL_S = 60  # from signing to entering is one round trip; clocks may disagree by seconds


class ContextKeyError(ValueError):
    """The context key is missing or malformed; the message names the variable, never the key."""


@dataclass(frozen=True)
class ContextKey:
    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret
        return f"ContextKey({self.key_id!r})"

    def mac(self, message: str) -> str:
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def text(self) -> str:
        """`key_id:hex`, the form `VECHAT_CONTEXT_KEY` takes."""
        return f"{self.key_id}:{self.secret.hex()}"


def new_key(key_id: str) -> ContextKey:
    """A fresh random key (32 bytes)."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ContextKeyError("a key id is 1 to 32 letters, digits, '_' or '-'")
    return ContextKey(key_id, secrets.token_bytes(32))


def parse_keys(text: str) -> tuple[ContextKey, ...]:
    """`key_id:hex[,key_id:hex…]` → keys, the signing one first."""
    keys = []
    for part in (p.strip() for p in text.split(",")):
        key_id, _, hex_secret = part.partition(":")
        try:
            secret = bytes.fromhex(hex_secret)
        except ValueError:
            secret = b""
        if not KEY_ID_PATTERN.fullmatch(key_id) or not 32 <= len(secret) <= 64:
            raise ContextKeyError(
                f"{KEY_VARIABLE} must be key_id:hex (32 to 64 bytes), comma-separated"
            )
        keys.append(ContextKey(key_id, secret))
    if len({k.key_id for k in keys}) != len(keys):
        raise ContextKeyError(f"{KEY_VARIABLE} names a key id twice")
    return tuple(keys)


_keys: tuple[ContextKey, ...] | None = None


def use_keys(keys: tuple[ContextKey, ...] | str | None) -> None:
    """Install the process's keys (`Database` does, from its settings); None: read the variable."""
    global _keys
    _keys = parse_keys(keys) if isinstance(keys, str) else keys


def loaded_keys() -> tuple[ContextKey, ...]:
    """The process's keys, the signing one first; from `VECHAT_CONTEXT_KEY` unless installed."""
    global _keys
    if _keys is None:
        text = os.environ.get(KEY_VARIABLE, "").strip()
        if not text:
            raise ContextKeyError(
                f"{KEY_VARIABLE} is not set: the database accepts no tenant context without it "
                "(docs/dba.md, 'The context key')"
            )
        _keys = parse_keys(text)
    return _keys


# Strictly increasing for every connection of this process (the database keeps the last one
# entered per backend); started from the clock so that a restarted process keeps going up.
_counter = itertools.count(time.time_ns())


def sign(
    identity: Identity,
    pid: int,
    backend_start_us: int,
    *,
    key: ContextKey | None = None,
    ttl_s: int = TOKEN_TTL_S,
    counter: int | None = None,
) -> str:
    """A token for `identity` on the backend `pid` started at `backend_start_us`."""
    if identity.user_type not in USER_TYPES:
        raise ValueError("invalid user_type")
    role = identity.role or ""
    if role and not ROLE_PATTERN.fullmatch(role):
        raise ValueError("invalid role")
    key = key or loaded_keys()[0]
    fields = (
        "v1",
        key.key_id,
        str(int(identity.organisation_id)),
        str(int(identity.user_id)),
        identity.user_type,
        role,
        str(int(pid)),
        str(int(backend_start_us)),
        str(next(_counter) if counter is None else counter),
        str(int(time.time()) + ttl_s),
    )
    message = "|".join(fields)
    return f"{message}|{key.mac(message)}"


# What `vechat.enter` compares the token's backend with (a backend sees its own row).
BACKEND_START_SQL = (
    "SELECT (extract(epoch FROM backend_start) * 1000000)::bigint FROM pg_catalog.pg_stat_activity "
    "WHERE pid = pg_catalog.pg_backend_pid()"
)

_backend_start: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def raw_connection(conn: Any) -> Any:
    """The driver's connection behind a pool's proxy (the proxy is new at every acquire)."""
    return getattr(conn, "_con", None) or conn


async def backend_of(conn: Any) -> tuple[int, int]:
    """(pid, backend start in µs) of an asyncpg connection; asked once per connection."""
    raw = raw_connection(conn)
    start = _backend_start.get(raw)
    if start is None:
        start = int(await conn.fetchval(BACKEND_START_SQL))
        _backend_start[raw] = start
    return int(conn.get_server_pid()), start


async def sign_for(conn: Any, identity: Identity) -> str:
    """A token for `identity` on this asyncpg connection."""
    pid, start = await backend_of(conn)
    return sign(identity, pid, start)
