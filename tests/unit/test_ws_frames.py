"""WebSocket client frames (api/frames.py): one tagged union, and the error each bad frame earns.

No server needed: `decode` is pure. The details are those the protocol has always given (an
`error` frame with status 400 carries them), the first fault in the order the protocol names
faults: the envelope, an unknown type, then the fields of the type — for `send`, where before what.
"""

from __future__ import annotations

import pytest

from vechat_rls.api import frames

INVALID: list[tuple[str, str, str | None]] = [
    ("not json", "a frame must be a JSON object", None),
    ("[1, 2]", "invalid frame: Expected `object`, got `array`", None),
    ('{"no": "type"}', "invalid frame: Object missing required field `type`", None),
    ('{"type": 5}', "invalid frame: Expected `str`, got `int` - at `$.type`", None),
    ('{"type": "dance"}', "unknown frame type 'dance'", None),
    (
        '{"type": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}',
        "unknown frame type 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
        None,
    ),
    (
        '{"type": "typing", "conversation_id": "1", "is_typing": true}',
        "invalid frame: Expected `int`, got `str` - at `$.conversation_id`",
        None,
    ),
    (
        '{"type": "typing", "conversation_id": 1, "is_typing": true, "client_id": "t-1"}',
        "invalid frame: Object contains unknown field `client_id`",
        "t-1",
    ),
    (
        '{"type": "read", "conversation_id": 0, "client_id": "r-1"}',
        "invalid frame: Expected `int` >= 1 - at `$.conversation_id`",
        "r-1",
    ),
    (
        '{"type": "presence", "status": "asleep"}',
        "invalid frame: Invalid enum value 'asleep' - at `$.status`",
        None,
    ),
    (
        '{"type": "send", "conversation_id": 1}',
        "invalid frame: Object missing required field `client_id`",
        None,
    ),
    (
        '{"type": "send", "client_id": "", "conversation_id": 0}',
        "invalid frame: Expected `int` >= 1 - at `$.conversation_id`",
        None,
    ),
    (
        '{"body": 5, "type": "send", "conversation_id": 0, "client_id": "s-1"}',
        "invalid frame: Expected `int` >= 1 - at `$.conversation_id`",
        "s-1",
    ),
    (
        '{"type": "send", "conversation_id": 1, "client_id": "s-2", "bogus": 1}',
        "invalid frame: Object contains unknown field `bogus`",
        "s-2",
    ),
    (
        '{"type": "send", "conversation_id": 1, "client_id": "s-3", "body": 5}',
        "invalid frame: Expected `str | null`, got `int` - at `$.body`",
        "s-3",
    ),
    (
        '{"type": "send", "conversation_id": 1, "client_id": "s-4",'
        ' "location": {"latitude": 91, "longitude": 0}}',
        "invalid frame: Expected `float` <= 90.0 - at `$.location.latitude`",
        "s-4",
    ),
    ('{"type": 5, "x": [1,', "invalid frame: Expected `str`, got `int` - at `$.type`", None),
]


@pytest.mark.parametrize(("raw", "detail", "client_id"), INVALID)
def test_an_invalid_frame_names_its_first_fault_and_keeps_a_usable_client_id(
    raw: str, detail: str, client_id: str | None
) -> None:
    for data in (raw, raw.encode()):
        with pytest.raises(frames.InvalidFrame) as refused:
            frames.decode(data)
        assert (refused.value.detail, refused.value.client_id) == (detail, client_id)


def test_binary_garbage_is_not_a_json_object() -> None:
    with pytest.raises(frames.InvalidFrame) as refused:
        frames.decode(b"\xff\xfe binary")
    assert refused.value.detail == "a frame must be a JSON object"


def test_valid_frames_decode_to_their_type() -> None:
    assert frames.decode('{"type": "ping", "anything": [1]}') == frames.Ping()
    typing = frames.decode('{"type": "typing", "conversation_id": 7, "is_typing": true}')
    assert typing == frames.Typing(conversation_id=7, is_typing=True)
    read = frames.decode('{"type": "read", "conversation_id": 7, "client_id": "r"}')
    assert read == frames.Read(conversation_id=7, client_id="r")
    assert frames.decode('{"type": "presence", "status": "away"}') == frames.Presence(status="away")
    send = frames.decode(
        '{"type": "send", "conversation_id": 7, "client_id": "s", "message_type": "voice",'
        ' "attachment_id": 3, "audio": {"duration_s": 2}}'
    )
    assert isinstance(send, frames.Send)
    assert (send.conversation_id, send.client_id, send.message_type) == (7, "s", "voice")
    assert send.audio is not None and send.audio.duration_s == 2


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "ping", "x": ' + "[" * 5_000 + "]" * 5_000 + "}",
        '{"type": "typing", "conversation_id": 1, "is_typing": true, "x": '
        + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}",
        '{"type": "send", "conversation_id": 1, "client_id": "c", "body": '
        + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=["ping", "typing", "send"],
)
def test_a_frame_nested_past_the_stack_is_an_invalid_frame(raw: str) -> None:
    with pytest.raises(frames.InvalidFrame) as refused:
        frames.decode(raw)
    assert refused.value.detail == frames.NESTED_TOO_DEEPLY
