"""Settings from `VECHAT_*` environment variables, read and validated in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

PREFIX = "VECHAT_"
MIB = 1024 * 1024
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
DOORBELL_MODES = ("coalesced", "transaction")
CONTEXT_MODES = ("signed", "settings")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line naming the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the service reads from its environment; field `x` is variable `VECHAT_X`."""

    database_url: str = "postgresql://vechat_app@127.0.0.1:5432/vechat"
    registry: str | None = None  # TOML file mapping organisations to databases
    jwt_secret: str | None = None  # HS256
    jwt_public_key: str | None = None  # RS256/ES256: PEM text, or the path of a PEM file
    jwt_algorithm: str | None = None  # HS256 with a secret; must be given with a public key
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # The key that signs tenant contexts: key_id:hex, the signing one first (db/context.py).
    context_key: str | None = None
    # "settings": transactions set the context as settings, as before contexts were signed. Only
    # for the benchmark's comparison: a database of this release shows such a transaction nothing.
    context_mode: str = "signed"
    max_body_bytes: int = 1 * MIB
    max_upload_bytes: int = 10 * MIB
    max_voice_bytes: int = 5 * MIB
    max_message_chars: int = 4000
    edit_window_s: int = 900
    rate_limit_per_min: int = 60
    event_retention_s: int = 7 * 24 * 3600
    ws_queue_limit: int = 256  # frames queued per socket; a full socket is paced from the event log
    ws_send_timeout_s: int = 15  # one frame unsent this long: the socket is stalled, close 1013
    presence_lease_s: int = 45  # a process's connection lease; renewed every third of it
    realtime_poll_s: int = 5  # safety net: how often cursors are compared with what was delivered
    doorbell: str = "coalesced"  # doorbell mode; "transaction": the trigger rings in every commit
    doorbell_batch_ms: int = 2  # coalesced: a process rings at most once per this, while busy
    delivery_pace_ms: int = 1000  # the widest batching window, while a backlog grows (0: never)
    statement_timeout_ms: int = 5000
    pool_min: int = 2
    pool_max: int = 10
    # Registry mode (fleet.py, docs/serving.md): a database unused this long closes its pool (its
    # realtime engine stops that long after its last socket); every pool, listener and ringer of
    # the process together hold at most pool_total_max connections.
    pool_idle_s: int = 60
    pool_total_max: int = 40
    host: str = "127.0.0.1"
    port: int = 8000
    # What one client may hold of a server process (api/protocol.py, docs/serving.md "Limits").
    max_header_bytes: int = 32 * 1024  # request line + headers; 431 above
    header_timeout_s: int = 10  # from a request's first byte to the end of its headers; 408 after
    body_timeout_s: int = 30  # longest wait for the next byte of a request body; 408 after
    keepalive_timeout_s: int = 5  # an idle keep-alive connection is closed after this
    max_connections: int = 2048  # open connections per process, WebSockets included; 503 above
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers (same-origin browser client)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `VECHAT_*` variables (empty = unset); `overrides` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field_type in _FIELD_TYPES.items():
            raw = env.get(PREFIX + name.upper(), "").strip()
            if raw:
                values[name] = _parse(name, raw, field_type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:  # an unknown override: a programming error, but say it in one line
            raise ConfigError(str(exc)) from None

    def __repr__(self) -> str:
        # Secrets and the database password never reach a log line or a traceback.
        shown = {f: _redact(f, getattr(self, f)) for f in self.__struct_fields__}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def resolved_jwt_algorithm(self) -> str:
        """The one algorithm tokens must use (validated in `__post_init__`)."""
        return self.jwt_algorithm or "HS256"

    def jwt_verification_key(self) -> str:
        """The HMAC secret or the PEM public key, whichever the algorithm needs."""
        if self.resolved_jwt_algorithm == "HS256":
            if not self.jwt_secret:
                raise ConfigError("VECHAT_JWT_SECRET is required to verify HS256 tokens")
            return self.jwt_secret
        assert self.jwt_public_key is not None  # guaranteed by _validate
        key = self.jwt_public_key
        if not key.lstrip().startswith("-----BEGIN"):
            try:
                key = Path(key).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"VECHAT_JWT_PUBLIC_KEY is neither PEM text nor a readable file: {exc.strerror}"
                ) from None
        return key


_FIELD_TYPES: dict[str, Any] = {f.name: f.type for f in msgspec.structs.fields(Settings)}
_POSITIVE = {
    "max_body_bytes",
    "max_upload_bytes",
    "max_voice_bytes",
    "max_message_chars",
    "edit_window_s",
    "rate_limit_per_min",
    "event_retention_s",
    "ws_queue_limit",
    "ws_send_timeout_s",
    "presence_lease_s",
    "realtime_poll_s",
    "statement_timeout_ms",
    "pool_max",
    "pool_idle_s",
    "port",
    "max_header_bytes",
    "header_timeout_s",
    "body_timeout_s",
    "keepalive_timeout_s",
    "max_connections",
}


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _redact(name: str, value: Any) -> Any:
    if name in ("jwt_secret", "context_key") and value:
        return "***"
    if name == "database_url":
        return redact_url(value)
    return value


def _parse(name: str, raw: str, field_type: Any) -> Any:
    var = PREFIX + name.upper()
    if field_type is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{var} must be an integer, got {raw!r}") from None
    if field_type == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _validate(s: Settings) -> None:
    for name in _POSITIVE:
        if getattr(s, name) <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()} must be > 0, got {getattr(s, name)}")
    if s.pool_min < 0 or s.pool_min > s.pool_max:
        raise ConfigError(
            f"VECHAT_POOL_MIN must be in 0..VECHAT_POOL_MAX ({s.pool_max}), got {s.pool_min}"
        )
    if s.pool_total_max < 2:
        # A database with sockets needs its listener and one pooled connection at least.
        raise ConfigError(f"VECHAT_POOL_TOTAL_MAX must be at least 2, got {s.pool_total_max}")
    if s.presence_lease_s > 45:
        # presence_view promises offline within 60 s of a process dying: lease + one sweep.
        raise ConfigError(f"VECHAT_PRESENCE_LEASE_S must be at most 45, got {s.presence_lease_s}")
    if s.doorbell not in DOORBELL_MODES:
        raise ConfigError(
            f"VECHAT_DOORBELL must be one of {', '.join(DOORBELL_MODES)}, got {s.doorbell!r}"
        )
    if not 0 <= s.doorbell_batch_ms <= 1000:
        raise ConfigError(f"VECHAT_DOORBELL_BATCH_MS must be in 0..1000, got {s.doorbell_batch_ms}")
    if not 0 <= s.delivery_pace_ms <= 10000:
        raise ConfigError(f"VECHAT_DELIVERY_PACE_MS must be in 0..10000, got {s.delivery_pace_ms}")
    if s.context_mode not in CONTEXT_MODES:
        raise ConfigError(
            f"VECHAT_CONTEXT_MODE must be one of {', '.join(CONTEXT_MODES)}, got {s.context_mode!r}"
        )
    if s.context_key is not None:
        _check_context_key(s.context_key)
    if s.port > 65535:
        raise ConfigError(f"VECHAT_PORT must be a TCP port (1-65535), got {s.port}")
    if not s.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("VECHAT_DATABASE_URL must be a postgresql:// URL")
    if s.jwt_algorithm is not None and s.jwt_algorithm not in JWT_ALGORITHMS:
        raise ConfigError(
            f"VECHAT_JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)}, "
            f"got {s.jwt_algorithm!r}"
        )
    if s.jwt_secret and s.jwt_public_key:
        raise ConfigError("set only one of VECHAT_JWT_SECRET and VECHAT_JWT_PUBLIC_KEY")
    if s.jwt_public_key and s.jwt_algorithm not in ("RS256", "ES256"):
        raise ConfigError("VECHAT_JWT_ALGORITHM must be RS256 or ES256 with VECHAT_JWT_PUBLIC_KEY")
    if s.jwt_secret and s.jwt_algorithm not in (None, "HS256"):
        raise ConfigError("VECHAT_JWT_ALGORITHM must be HS256 with VECHAT_JWT_SECRET")
    if s.jwt_algorithm in ("RS256", "ES256") and not s.jwt_public_key:
        raise ConfigError(f"VECHAT_JWT_PUBLIC_KEY is required with {s.jwt_algorithm}")


def _check_context_key(text: str) -> None:
    # The format of db/context.py's parse_keys, checked here so a bad key is one line at start-up
    # (config sits below db in the layers).
    parts = [p.strip() for p in text.split(",")]
    if len({part.partition(":")[0] for part in parts}) != len(parts):
        raise ConfigError("VECHAT_CONTEXT_KEY names a key id twice")
    for part in parts:
        key_id, _, hex_secret = part.partition(":")
        try:
            size = len(bytes.fromhex(hex_secret))
        except ValueError:
            size = 0
        if not (1 <= len(key_id) <= 32 and key_id.replace("_", "").replace("-", "").isalnum()
                and key_id.isascii() and 32 <= size <= 64):
            raise ConfigError(
                "VECHAT_CONTEXT_KEY must be key_id:hex (32 to 64 bytes), comma-separated"
            )
