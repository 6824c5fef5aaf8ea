"""What goes over LISTEN/NOTIFY: sealed so that a listening login learns nothing, checked so that
a forged notification is dropped.

Any login that may connect may LISTEN and NOTIFY on any channel. So the service's own
notifications are sealed (AES-GCM with a key derived from the context key, db/context.py; the
channel is authenticated too): a listener sees ciphertext of a padded length, and anything it
cannot open — or that is more than `MAX_AGE_S` old or ahead — was not the service's and is
dropped, and counted (`/metrics`: `vechat_notifications_dropped_total`). The event trigger
rings a doorbell the database signs (`vechat.doorbell`, d1|key_id|ms|hmac): no id at all, it
only says "look again" to every process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vechat_rls.db import context

MAX_AGE_S = 60.0
PAD = 64  # plaintexts are padded to a multiple of this: a length says little of what is inside
DOORBELL: Final = object()
"""What `open_` returns for a doorbell the database signed: no ids, "look again"."""

_encoder = msgspec.json.Encoder()


class _Sealed(msgspec.Struct, frozen=True):
    t: int  # sealed at, ms since the epoch
    p: Any  # the notification itself


def _cipher(key: context.ContextKey) -> AESGCM:
    return AESGCM(hmac.new(key.secret, b"vechat notify v1", hashlib.sha256).digest())


_ciphers: dict[context.ContextKey, AESGCM] = {}


def _cipher_of(key: context.ContextKey) -> AESGCM:
    cipher = _ciphers.get(key)
    if cipher is None:
        cipher = _ciphers[key] = _cipher(key)
    return cipher


def seal(channel: str, payload: Any) -> str:
    """`payload` (JSON-encodable) as a notification text for `channel`."""
    key = context.loaded_keys()[0]
    plain = _encoder.encode(_Sealed(int(time.time() * 1000), payload))
    plain += b" " * (-len(plain) % PAD)
    nonce = os.urandom(12)
    sealed = _cipher_of(key).encrypt(nonce, plain, channel.encode())
    return f"s1|{key.key_id}|{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def open_(channel: str, text: str) -> Any:
    """The payload `seal` sealed, `DOORBELL` for a signed doorbell, None for anything forged,
    stale or for another channel."""
    kind, _, rest = text.partition("|")
    key_id, _, body = rest.partition("|")
    key = next((k for k in context.loaded_keys() if k.key_id == key_id), None)
    if key is None:
        return None
    now_ms = time.time() * 1000
    if kind == "d1":
        stamp, _, mac = body.partition("|")
        expected = key.mac(f"d1|{key_id}|{stamp}|{channel}")
        if not hmac.compare_digest(mac, expected) or not _fresh(stamp, now_ms):
            return None
        return DOORBELL
    if kind != "s1":
        return None
    try:
        raw = base64.urlsafe_b64decode(body)
        plain = _cipher_of(key).decrypt(raw[:12], raw[12:], channel.encode())
        sealed = msgspec.json.decode(plain, type=_Sealed)
    except (ValueError, InvalidTag, msgspec.DecodeError):
        return None
    if not _fresh(sealed.t, now_ms):
        return None
    return sealed.p


def _fresh(stamp: int | str, now_ms: float) -> bool:
    try:
        return abs(now_ms - int(stamp)) <= MAX_AGE_S * 1000
    except ValueError:
        return False
