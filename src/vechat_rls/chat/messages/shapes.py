"""The API shape of a message: what is shown, what is sent, what is changed.

A message's JSON keeps the ERP's meaning under the API's names (`body`, `audio`, `location`,
nested `attachment`); reading.py maps the table's columns to these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from vechat_rls.chat.attachments import Attachment
from vechat_rls.chat.participants import Id, Participant

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_MARK_READ = 1000
MAX_SEARCH_CHARS = 500
BODY_PREVIEW_CHARS = 100

MessageType = Literal["text", "image", "file", "video", "audio", "location"]
MessageTypeIn = Literal["text", "image", "file", "video", "audio", "voice", "location"]
"""Accepted on input: `voice` is the legacy spelling of `audio`."""


class Location(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A point on Earth; 0 is a valid coordinate. `accuracy` is in metres."""

    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    accuracy: Annotated[float, msgspec.Meta(ge=0, le=99_999_999)] | None = None


class Audio(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A voice note's metadata; the sound itself is the attachment."""

    duration_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)]
    waveform: Annotated[str, msgspec.Meta(max_length=8192)] | None = None


class ReplyTo(msgspec.Struct, frozen=True, kw_only=True):
    """What a reply quotes: the first characters of the original; once the original is deleted
    for everyone, `deleted` and no preview."""

    id: int
    sender: Participant
    body_preview: str | None
    message_type: MessageType
    deleted: bool


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message as its sender or receiver sees it; a tombstone has `deleted` and no content."""

    id: int
    conversation_id: int
    sender: Participant
    receiver: Participant
    message_type: MessageType
    body: str | None
    attachment: Attachment | None
    location: Location | None
    audio: Audio | None
    reply_to: ReplyTo | None
    client_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    read_at: datetime | None


class MessageCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message to send. Which fields a type needs: `validate_create`."""

    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    message_type: MessageTypeIn = "text"
    body: str | None = None
    attachment_id: Id | None = None
    location: Location | None = None
    audio: Audio | None = None
    reply_to_id: Id | None = None


class PeerMessageCreate(MessageCreate, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /messages`: a message to `receiver`, in their conversation (created on demand)."""

    receiver: Participant


class MessageUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PATCH /messages/{id}`: the new text of a text message."""

    body: str


class MessagesRead(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /messages/read`: messages to mark read (only those the caller received count)."""

    message_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_MARK_READ)]


class Marked(msgspec.Struct, frozen=True, kw_only=True):
    """How many messages went from unread to read."""

    marked: int


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Message]
    next_cursor: str | None


class MessageEdit(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier version: `body` is the text as it was before the edit made at `edited_at`."""

    id: int
    message_id: int
    body: str
    edited_at: datetime


class MessageEditPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MessageEdit]
    next_cursor: str | None


