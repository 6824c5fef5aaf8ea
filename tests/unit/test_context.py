"""The context key and sealed notifications (db/context.py, db/seal.py), without a database."""

from __future__ import annotations

import time

import pytest

from vechat_rls.api.serving import preflight
from vechat_rls.config import ConfigError, Settings
from vechat_rls.db import context, seal


def test_serve_refuses_to_start_without_a_context_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(context.KEY_VARIABLE, raising=False)
    monkeypatch.setattr(context, "_keys", None)
    with pytest.raises(ConfigError, match="VECHAT_CONTEXT_KEY is not set"):
        preflight(Settings(jwt_secret="x" * 32), allow_privileged_role=False, warn=print)


@pytest.mark.parametrize("text", ["k1", "k1:abcd", "bad id!:" + "00" * 32, "k:" + "0" * 63,
                                  "k1:" + "00" * 32 + ",k1:" + "11" * 32])
def test_a_malformed_context_key_is_one_line_naming_the_variable(text: str) -> None:
    with pytest.raises(context.ContextKeyError, match="VECHAT_CONTEXT_KEY"):
        context.parse_keys(text)
    with pytest.raises(ConfigError, match="VECHAT_CONTEXT_KEY"):
        Settings(context_key=text)


def test_the_key_never_shows_in_a_repr() -> None:
    key = context.new_key("k1")
    assert key.secret.hex() not in repr(key)
    assert key.secret.hex() not in repr(Settings(context_key=key.text()))


def test_sealed_notifications_open_only_on_their_channel_fresh_and_untouched() -> None:
    text = seal.seal("vechat_typing", {"o": 1, "c": 2})
    assert seal.open_("vechat_typing", text) == {"o": 1, "c": 2}
    assert seal.open_("vechat_presence", text) is None  # replayed on another channel
    assert seal.open_("vechat_typing", text[:-4] + "AAAA") is None  # tampered
    assert seal.open_("vechat_typing", '{"o": 1, "c": 2}') is None  # what psql would send
    assert (len(text.split("|")[2]) * 3 // 4 - 28) % seal.PAD <= 2  # padded, whatever it holds


def test_a_stale_notification_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    text = seal.seal("vechat_events", {"o": 1, "e": []})
    later = time.time() + seal.MAX_AGE_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert seal.open_("vechat_events", text) is None
