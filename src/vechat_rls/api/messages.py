"""`/api/v1/conversations/{id}/messages` and `/api/v1/messages…`: HTTP over chat/messages/."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Response, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from vechat_rls.api.dependencies import ConnDep, IdentityDep, SettingsDep
from vechat_rls.api.params import Cursor, Limit, PathId
from vechat_rls.api.problems import problem_responses
from vechat_rls.chat.errors import NotFound
from vechat_rls.chat.messages import (
    Marked,
    Message,
    MessageCreate,
    MessageEditPage,
    MessagePage,
    MessagesRead,
    MessageUpdate,
    PeerMessageCreate,
    delete_message,
    edit_message,
    mark_read,
    message_edits,
    message_page,
    search_messages,
    send_message,
    send_to_receiver,
)
from vechat_rls.chat.messages.shapes import DEFAULT_LIMIT, MAX_SEARCH_CHARS
from vechat_rls.identity import BIGINT_MAX


def _created(message: Message, created: bool) -> Response[Message]:
    return Response(message, status_code=201 if created else 200)


# A send answers 201, or 200 with the original for a client_id already used by the same sender;
# 404 for a conversation, attachment or reply it cannot see, 409 for a client_id used for another
# message, 422 for a message that breaks a rule, 429 past the rate limit.
SEND_RESPONSES = {
    200: ResponseSpec(
        data_container=Message,
        description="A retry: the message sent earlier with this client_id",
        generate_examples=False,
    ),
    **problem_responses(404, 409, 422, 429),
}


class MessagesController(Controller):
    """`/conversations/{id}/messages` and `/messages…`: pages, sending, edits, deletes, reads."""

    path = "/"
    tags = ["messages"]

    @get(
        "/conversations/{conversation_id:int}/messages",
        summary="A page of a conversation in chronological order (newest page by default)",
        responses=problem_responses(404),
    )
    async def list_messages(
        self,
        conn: ConnDep,
        conversation_id: PathId,
        before: Annotated[
            int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="only messages older than")
        ] = None,
        after: Annotated[
            int | None, QueryParameter(ge=1, le=BIGINT_MAX, description="only messages newer than")
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> MessagePage:
        page = await message_page(conn, conversation_id, before=before, after=after, limit=limit)
        if page is None:
            raise NotFound("conversation", conversation_id)
        return page

    @post(
        "/conversations/{conversation_id:int}/messages",
        summary="Send a message (201); the same client_id again returns the original (200)",
        status_code=201,
        responses=SEND_RESPONSES,
    )
    async def send_to_conversation(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        settings: SettingsDep,
        conversation_id: PathId,
        data: JSONBody[MessageCreate],
    ) -> Response[Message]:
        return _created(*await send_message(conn, identity, conversation_id, data, settings))

    @post(
        "/messages",
        summary="Send a message to a receiver, opening the conversation on demand",
        status_code=201,
        responses=SEND_RESPONSES,
    )
    async def send_to_receiver(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        settings: SettingsDep,
        data: JSONBody[PeerMessageCreate],
    ) -> Response[Message]:
        return _created(*await send_to_receiver(conn, identity, data, settings))

    @post("/messages/read", summary="Mark messages the caller received as read", status_code=200)
    async def read_messages(self, conn: ConnDep, data: JSONBody[MessagesRead]) -> Marked:
        return Marked(marked=await mark_read(conn, list(data.message_ids)))

    @get(
        "/messages/search",
        summary="Full-text search over the messages shown to the caller",
        responses=problem_responses(404),
    )
    async def search(
        self,
        conn: ConnDep,
        q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_SEARCH_CHARS)],
        conversation_id: Annotated[int | None, QueryParameter(ge=1, le=BIGINT_MAX)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> MessagePage:
        page = await search_messages(
            conn, q, conversation_id=conversation_id, cursor=cursor, limit=limit
        )
        if page is None:
            raise NotFound("conversation", conversation_id)
        return page

    @patch(
        "/messages/{message_id:int}",
        summary="Edit the text of one's own text message",
        responses=problem_responses(403, 404, 422),
    )
    async def edit(
        self,
        conn: ConnDep,
        settings: SettingsDep,
        message_id: PathId,
        data: JSONBody[MessageUpdate],
    ) -> Message:
        return await edit_message(conn, message_id, data, settings)

    @get(
        "/messages/{message_id:int}/edits",
        summary="Earlier versions of a message",
        responses=problem_responses(404),
    )
    async def edits(
        self,
        conn: ConnDep,
        message_id: PathId,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> MessageEditPage:
        page = await message_edits(conn, message_id, cursor=cursor, limit=limit)
        if page is None:
            raise NotFound("message", message_id)
        return page

    @delete(
        "/messages/{message_id:int}",
        summary="Delete a message for everyone (sender only) or for oneself",
        status_code=204,
        responses=problem_responses(403, 404),
    )
    async def remove(
        self,
        conn: ConnDep,
        message_id: PathId,
        for_: Annotated[
            Literal["everyone", "me"],
            QueryParameter(name="for", description="everyone (sender only) or me"),
        ] = "me",
    ) -> None:
        await delete_message(conn, message_id, for_everyone=for_ == "everyone")
