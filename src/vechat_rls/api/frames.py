"""The frames a WebSocket client sends (contract.md): one msgspec tagged union, `type` its tag.

`decode` turns a text or binary frame into a `Ping`, `Typing`, `Read`, `Presence` or `Send`,
strictly, in one pass. A frame it refuses raises `InvalidFrame` (an `error` frame, status 400)
whose detail is the first fault the protocol has always named: the frame's envelope first (a
JSON object with a string `type`), then an unknown `type`, then the fields of that type — for
`send`, where, then the message itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from vechat_rls.chat.messages import MessageCreate
from vechat_rls.chat.presence import Status
from vechat_rls.identity import BIGINT_MAX

Id = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Ping(msgspec.Struct, frozen=True, tag_field="type", tag="ping"):
    """Answered with `pong`; anything else in it is ignored."""


class Typing(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag="typing",
):
    conversation_id: Id
    is_typing: bool


class Read(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag="read",
):
    conversation_id: Id
    up_to_message_id: Id | None = None
    client_id: ClientId | None = None


class Presence(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag="presence",
):
    status: Status


class Send(
    MessageCreate,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag="send",
):
    """The body of `POST /conversations/{id}/messages`, with the conversation and a
    `client_id`, which a socket's sends must carry (its ack names it)."""

    conversation_id: Id
    client_id: ClientId


ClientFrame = Ping | Typing | Read | Presence | Send

_decoder = msgspec.json.Decoder(ClientFrame)


class InvalidFrame(Exception):
    """A frame `decode` refused: `detail` for the `error` frame, and the frame's `client_id`
    when it carried a usable one."""

    def __init__(self, detail: str, client_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.client_id = client_id


NESTED_TOO_DEEPLY = "a frame must not nest arrays or objects that deeply"


def decode(raw: str | bytes) -> ClientFrame:
    """The frame in `raw`; `InvalidFrame` for anything else."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        invalid = _invalid(raw)
    except RecursionError:
        # msgspec decodes (and skips) nested values recursively: some hundreds of levels exhaust
        # the stack. The client's fault: an error frame with 400, like any invalid frame.
        invalid = InvalidFrame(NESTED_TOO_DEEPLY)
    raise invalid


# --- why a frame is invalid -------------------------------------------------------------------
# Only for frames the union refused: the union reports the first fault in the order of the
# frame's keys, the protocol names the envelope's first and, in a `send`, the head's.


class _Envelope(msgspec.Struct):
    type: str
    client_id: Any = None


class _SendHead(msgspec.Struct, kw_only=True):
    type: Literal["send"]
    conversation_id: Id
    client_id: ClientId


_envelope = msgspec.json.Decoder(_Envelope)
_OF_TYPE: dict[str, type[msgspec.Struct]] = {"typing": Typing, "read": Read, "presence": Presence}
_SEND_HEAD = ("type", "conversation_id", "client_id")


def _invalid(raw: str | bytes) -> InvalidFrame:
    try:
        envelope = _envelope.decode(raw)
    except msgspec.DecodeError as exc:
        return InvalidFrame(_detail(exc))
    except RecursionError:
        return InvalidFrame(NESTED_TOO_DEEPLY)
    client_id = envelope.client_id
    if not (isinstance(client_id, str) and 0 < len(client_id) <= 64):
        client_id = None
    try:
        if envelope.type == "send":
            fields = msgspec.json.decode(raw, type=dict[str, Any])
            head = {name: fields.pop(name) for name in _SEND_HEAD if name in fields}
            msgspec.convert(head, _SendHead, strict=True)
            msgspec.convert(fields, MessageCreate, strict=True)
        elif envelope.type in _OF_TYPE:
            msgspec.json.decode(raw, type=_OF_TYPE[envelope.type])
        else:
            return InvalidFrame(f"unknown frame type {envelope.type[:40]!r}", client_id)
    except msgspec.DecodeError as exc:
        return InvalidFrame(_detail(exc), client_id)
    except RecursionError:
        return InvalidFrame(NESTED_TOO_DEEPLY, client_id)
    return InvalidFrame("invalid frame", client_id)  # pragma: no cover - the union refused it


def _detail(exc: msgspec.DecodeError) -> str:
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid frame: {exc}"
    return "a frame must be a JSON object"
