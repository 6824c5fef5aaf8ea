"""Messages, by concern: their shape, reading them, sending them, changing them.

Every function takes a connection already inside the caller's tenant transaction, and acts as
that transaction's user.
"""

from vechat_rls.chat.messages.changing import delete_message, edit_message, mark_read
from vechat_rls.chat.messages.reading import (
    fetch_messages,
    message_columns,
    message_edits,
    message_from_row,
    message_page,
    search_messages,
)
from vechat_rls.chat.messages.sending import send_message, send_to_receiver, validate_create
from vechat_rls.chat.messages.shapes import (
    Marked,
    Message,
    MessageCreate,
    MessageEditPage,
    MessagePage,
    MessagesRead,
    MessageUpdate,
    PeerMessageCreate,
)

__all__ = [
    "Marked",
    "Message",
    "MessageCreate",
    "MessageEditPage",
    "MessagePage",
    "MessageUpdate",
    "MessagesRead",
    "PeerMessageCreate",
    "delete_message",
    "edit_message",
    "fetch_messages",
    "mark_read",
    "message_columns",
    "message_edits",
    "message_from_row",
    "message_page",
    "search_messages",
    "send_message",
    "send_to_receiver",
    "validate_create",
]
