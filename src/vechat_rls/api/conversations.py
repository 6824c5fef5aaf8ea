"""`/api/v1/conversations`: HTTP over chat/conversations.py."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from litestar import Controller, Response, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation, RequestBody
from litestar.params import JSONBody, QueryParameter

from vechat_rls.api.dependencies import ConnDep, IdentityDep
from vechat_rls.api.params import Cursor, Limit, PathId
from vechat_rls.api.problems import problem_responses
from vechat_rls.chat import conversations
from vechat_rls.chat.conversations import (
    Conversation,
    ConversationCreate,
    ConversationPage,
    ConversationReadCreate,
    ConversationUpdate,
)
from vechat_rls.chat.messages.shapes import DEFAULT_LIMIT


@dataclasses.dataclass
class OptionalBody(Operation):
    """An operation whose JSON body may be left out (Litestar marks every body required).

    A dataclass itself, so that its generated `__init__` runs `__post_init__`."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body = dataclasses.replace(self.request_body, required=False)


class ConversationsController(Controller):
    """`/conversations`: list, create-or-get, read, flag, mark read, delete for me."""

    path = "/conversations"
    tags = ["conversations"]

    @get(summary="The caller's conversations, most recent first")
    async def list_conversations(
        self,
        conn: ConnDep,
        archived: Annotated[
            Literal["false", "true", "any"],
            QueryParameter(description="false (default): the inbox; true: archived only; any: all"),
        ] = "false",
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ConversationPage:
        flag = None if archived == "any" else archived == "true"
        return await conversations.conversation_page(
            conn, archived=flag, cursor=cursor, limit=limit
        )

    @post(
        summary="Create-or-get the conversation with a peer: 201 new, 200 existing",
        responses={
            200: ResponseSpec(
                data_container=Conversation,
                description="The conversation with that peer already existed",
                generate_examples=False,
            ),
            **problem_responses(404),
        },
    )
    async def create_conversation(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[ConversationCreate]
    ) -> Response[Conversation]:
        conversation, created = await conversations.open_with(conn, identity, data.peer)
        return Response(conversation, status_code=201 if created else 200)

    @get("/{conversation_id:int}", summary="One conversation", responses=problem_responses(404))
    async def get_conversation(
        self, conn: ConnDep, identity: IdentityDep, conversation_id: PathId
    ) -> Conversation:
        return await conversations.conversation(conn, identity, conversation_id)

    @patch(
        "/{conversation_id:int}",
        summary="Set the caller's archived / muted flags",
        responses=problem_responses(404),
    )
    async def update_conversation(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        conversation_id: PathId,
        data: JSONBody[ConversationUpdate],
    ) -> Conversation:
        return await conversations.update_flags(conn, identity, conversation_id, data)

    @post(
        "/{conversation_id:int}/read",
        summary="Mark the caller's incoming messages read (all, or up to an id); no body: all",
        status_code=200,
        operation_class=OptionalBody,
        responses=problem_responses(404),
    )
    async def read_conversation(
        self,
        conn: ConnDep,
        identity: IdentityDep,
        conversation_id: PathId,
        data: JSONBody[ConversationReadCreate | None] = None,
    ) -> Conversation:
        up_to = data.up_to_message_id if data else None
        return await conversations.mark_conversation_read(conn, identity, conversation_id, up_to)

    @delete(
        "/{conversation_id:int}",
        summary="Delete the conversation for the caller only; the peer keeps everything",
        status_code=204,
        responses=problem_responses(404),
    )
    async def delete_conversation(self, conn: ConnDep, conversation_id: PathId) -> None:
        await conversations.delete_for_me(conn, conversation_id)
