"""`/api/v1/conversations`: create-or-get, list, flags, read state, delete for me — over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.support.api import Caller, api_client, assert_problem
from tests.support.chat import (
    API,
    Org,
    admin_sql,
    conversation,
    get_json,
    listed_ids,
    open_conversation,
    page_ids,
    seed_directory,
    send,
)
from tests.support.fixtures import Database
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls import db
from vechat_rls.chat import conversations
from vechat_rls.chat.conversations import fetch_conversation
from vechat_rls.identity import Identity

ORG_A, ORG_B = (Org(i) for i in new_organisation_ids(2))


@pytest.fixture(scope="module")
def organisations(migrated_database: Database) -> Iterator[None]:
    for org in (ORG_A, ORG_B):
        seed_directory(migrated_database.admin_url, org)
    yield
    purge_organisations(migrated_database.admin_url, [ORG_A.id, ORG_B.id])


@pytest.fixture(scope="module")
async def client(
    migrated_database: Database, organisations: None
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(migrated_database, rate_limit_per_min=100_000) as c:
        yield c


def fresh_org(database: Database) -> Org:
    """An organisation of its own, for tests that count what is listed."""
    org = Org(new_organisation_ids(1)[0])
    seed_directory(database.admin_url, org)
    return org


@pytest.fixture
def org(migrated_database: Database, organisations: None) -> Iterator[Org]:
    org = fresh_org(migrated_database)
    yield org
    purge_organisations(migrated_database.admin_url, [org.id])


# --- create-or-get ----------------------------------------------------------------------------


async def test_create_is_201_then_200_in_either_order(
    client: AsyncTestClient[Any], org: Org
) -> None:
    first = await client.post(
        f"{API}/conversations", json={"peer": org.client.participant}, headers=org.staff.headers
    )
    assert first.status_code == 201, first.text
    again = await client.post(
        f"{API}/conversations", json={"peer": org.client.participant}, headers=org.staff.headers
    )
    reverse = await client.post(
        f"{API}/conversations", json={"peer": org.staff.participant}, headers=org.client.headers
    )
    assert again.status_code == 200 and reverse.status_code == 200
    assert first.json()["id"] == again.json()["id"] == reverse.json()["id"]
    body = first.json()
    assert body == {
        "id": body["id"],
        "peer": {
            "user_id": 12,
            "user_type": "client",
            "display_name": "Client One",
            "presence": {"status": "offline", "last_seen": None},
        },
        "last_message": None,
        "last_message_at": None,
        "unread_count": 0,
        "archived": False,
        "muted": False,
        "created_at": body["created_at"],
    }
    assert body["created_at"].endswith("Z")
    assert reverse.json()["peer"]["display_name"] == "Staff One"


async def test_concurrent_creates_of_one_pair_make_one_conversation(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    import asyncio

    async def create(caller: Caller, peer: Caller) -> Any:
        return await client.post(
            f"{API}/conversations", json={"peer": peer.participant}, headers=caller.headers
        )

    responses = await asyncio.gather(
        *[
            create(org.staff, org.staff2) if i % 2 else create(org.staff2, org.staff)
            for i in range(10)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    rows = admin_sql(
        migrated_database.admin_url,
        "SELECT count(*) FROM vechat_conversations WHERE organisation_id = %s",
        org.id,
    )
    assert rows == [(1,)]


async def test_talking_to_oneself_is_400(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        f"{API}/conversations", json={"peer": ORG_A.staff.participant}, headers=ORG_A.staff.headers
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("caller", "peer"),
    [
        ("staff", {"user_id": 999, "user_type": "personnel"}),  # nobody
        ("staff", {"user_id": 15, "user_type": "personnel"}),  # inactive
        ("staff", {"user_id": 12, "user_type": "personnel"}),  # wrong type
        ("client", {"user_id": 13, "user_type": "personnel"}),  # not assigned to this client
        ("client", {"user_id": 14, "user_type": "client"}),  # clients never see clients
        ("client2", {"user_id": 13, "user_type": "personnel"}),  # unassigned: commercial only
        ("client2", {"user_id": 15, "user_type": "personnel"}),  # commercial but inactive
    ],
    ids=[
        "unknown",
        "inactive",
        "wrong-type",
        "unassigned",
        "client-to-client",
        "not-commercial",
        "inactive-commercial",
    ],
)
async def test_peer_that_is_not_a_visible_active_contact_is_404(
    client: AsyncTestClient[Any],
    org: Org,
    caller: str,
    peer: dict[str, Any],
    migrated_database: Database,
) -> None:
    me: Caller = getattr(org, caller)
    response = await client.post(f"{API}/conversations", json={"peer": peer}, headers=me.headers)
    body = assert_problem(response, 404)
    assert body["detail"] == f"user {peer['user_type']}:{peer['user_id']} not found"
    assert admin_sql(
        migrated_database.admin_url,
        "SELECT count(*) FROM vechat_conversations WHERE organisation_id = %s",
        org.id,
    ) == [(0,)]


async def test_visible_peers_can_be_talked_to(client: AsyncTestClient[Any], org: Org) -> None:
    await open_conversation(client, org.client, org.staff)  # assigned
    await open_conversation(client, org.client2, org.staff)  # commercial, nobody assigned
    await open_conversation(client, org.staff, org.staff2)  # colleagues
    await open_conversation(client, org.staff2, org.client2)  # staff see every client


async def test_peer_of_another_organisation_is_404_even_with_the_same_id(
    client: AsyncTestClient[Any],
) -> None:
    foreign = Caller(ORG_B.id, 77, "personnel")
    response = await client.post(
        f"{API}/conversations", json={"peer": foreign.participant}, headers=ORG_A.staff.headers
    )
    assert_problem(response, 404)  # 77 exists nowhere in A; B's directory is invisible


async def test_existing_conversation_is_returned_even_after_the_peer_left(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    conversation_id = await open_conversation(client, org.client2, org.staff)
    admin_sql(
        migrated_database.admin_url,
        "UPDATE vechat_contacts SET active = false WHERE organisation_id = %s AND user_id = 11",
        org.id,
    )
    assert await open_conversation(client, org.client2, org.staff) == conversation_id


# --- reading ----------------------------------------------------------------------------------


async def test_conversation_shows_the_peer_presence_and_the_callers_side(
    client: AsyncTestClient[Any], org: Org
) -> None:
    conversation_id = await open_conversation(client, org.staff, org.client)
    put = await client.put(f"{API}/presence", json={"status": "busy"}, headers=org.client.headers)
    assert put.status_code in (200, 204), put.text
    message = await send(client, org.client, conversation_id, "hi staff")
    staff_view = await conversation(client, org.staff, conversation_id)
    assert staff_view["peer"]["presence"]["status"] == "busy"
    assert staff_view["unread_count"] == 1
    assert staff_view["last_message"] == message
    assert staff_view["last_message_at"] == message["created_at"]
    client_view = await conversation(client, org.client, conversation_id)
    assert client_view["unread_count"] == 0
    assert client_view["peer"]["user_id"] == 11 and client_view["peer"]["presence"]["status"]


async def test_list_is_most_recent_first_with_a_stable_cursor(
    client: AsyncTestClient[Any], org: Org
) -> None:
    peers = [org.client, org.staff2, org.client2, org.staff3]
    ids = [await open_conversation(client, org.staff, peer) for peer in peers]
    for conversation_id in (ids[2], ids[0]):
        await send(client, org.staff, conversation_id, "bump")
    expected = [ids[0], ids[2], ids[3], ids[1]]  # by activity: messages, then creation
    first = await get_json(client, org.staff, "/conversations", limit=2)
    assert [c["id"] for c in first["items"]] == expected[:2]
    # a conversation created while paging lands before the cursor: no repeat, no skip
    assert await open_conversation(client, org.client, org.staff) == ids[0]  # not new
    second = await get_json(
        client, org.staff, "/conversations", limit=2, cursor=first["next_cursor"]
    )
    assert [c["id"] for c in second["items"]] == expected[2:]
    assert second["next_cursor"] is None
    assert await listed_ids(client, org.staff, limit=1) == expected


async def test_pages_neither_repeat_nor_skip_while_conversations_are_created(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    # staff2 talks to many clients of the directory (rows added as the superuser)
    clients = [Caller(org.id, 100 + i, "client") for i in range(9)]
    for c in clients:
        admin_sql(
            migrated_database.admin_url,
            "INSERT INTO vechat_contacts (organisation_id, user_id, user_type, display_name) "
            "VALUES (%s, %s, 'client', 'c')",
            org.id,
            c.user_id,
        )
    before = [await open_conversation(client, org.staff2, c) for c in clients[:6]]
    seen: list[int] = []
    cursor = None
    extra = iter(clients[6:])
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await get_json(client, org.staff2, "/conversations", **params)
        seen += [c["id"] for c in page["items"]]
        newcomer = next(extra, None)
        if newcomer is not None:
            await open_conversation(client, org.staff2, newcomer)  # lands on page one
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen == list(reversed(before))


async def test_archived_filter_and_flags_are_the_callers_own(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await open_conversation(client, org.staff, org.client)
    b = await open_conversation(client, org.staff, org.staff2)
    patched = await client.patch(
        f"{API}/conversations/{a}", json={"archived": True}, headers=org.staff.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["archived"] is True and patched.json()["muted"] is False
    muted = await client.patch(
        f"{API}/conversations/{a}", json={"muted": True}, headers=org.staff.headers
    )
    assert muted.json()["archived"] is True and muted.json()["muted"] is True  # UNSET kept
    unchanged = await client.patch(f"{API}/conversations/{a}", json={}, headers=org.staff.headers)
    assert unchanged.status_code == 200 and unchanged.json()["archived"] is True
    assert await listed_ids(client, org.staff) == [b]
    assert await listed_ids(client, org.staff, archived="true") == [a]
    assert sorted(await listed_ids(client, org.staff, archived="any")) == sorted([a, b])
    peer_view = await conversation(client, org.client, a)
    assert peer_view["archived"] is False and peer_view["muted"] is False
    assert await listed_ids(client, org.client) == [a]


async def test_an_incoming_message_unarchives_for_the_receiver_only(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await open_conversation(client, org.staff, org.client)
    for caller in (org.staff, org.client):
        await client.patch(
            f"{API}/conversations/{a}", json={"archived": True}, headers=caller.headers
        )
    await send(client, org.client, a, "are you there?")
    assert (await conversation(client, org.staff, a))["archived"] is False  # receiver
    assert (await conversation(client, org.client, a))["archived"] is True  # sender


async def test_read_marks_incoming_messages_all_or_up_to_an_id(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await open_conversation(client, org.staff, org.client)
    sent = [await send(client, org.client, a, f"m{i}") for i in range(4)]
    await send(client, org.staff, a, "mine")
    assert (await conversation(client, org.staff, a))["unread_count"] == 4
    partial = await client.post(
        f"{API}/conversations/{a}/read",
        json={"up_to_message_id": sent[1]["id"]},
        headers=org.staff.headers,
    )
    assert partial.status_code == 200, partial.text
    assert partial.json()["unread_count"] == 2
    items = (await get_json(client, org.client, f"/conversations/{a}/messages"))["items"]
    read = {m["id"]: m["read_at"] is not None for m in items}
    assert [read[m["id"]] for m in sent] == [True, True, False, False]
    everything = await client.post(
        f"{API}/conversations/{a}/read", json={}, headers=org.staff.headers
    )
    assert everything.json()["unread_count"] == 0
    await send(client, org.client, a, "one more")
    no_body = await client.post(f"{API}/conversations/{a}/read", headers=org.staff.headers)
    assert no_body.status_code == 200 and no_body.json()["unread_count"] == 0
    assert (await conversation(client, org.client, a))["unread_count"] == 1  # "mine"


# --- delete for me ----------------------------------------------------------------------------


async def test_delete_for_me_hides_the_conversation_and_its_history_for_the_caller_only(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await open_conversation(client, org.staff, org.client)
    old = [await send(client, org.client, a, f"old {i}") for i in range(3)]
    await send(client, org.staff, a, "old reply")
    response = await client.delete(f"{API}/conversations/{a}", headers=org.staff.headers)
    assert response.status_code == 204, response.text
    assert a not in await listed_ids(client, org.staff, archived="any")
    gone = await conversation(client, org.staff, a)
    assert gone["last_message"] is None and gone["unread_count"] == 0
    assert await page_ids(client, org.staff, a) == []
    # the peer keeps everything
    assert a in await listed_ids(client, org.client)
    assert len(await page_ids(client, org.client, a)) == 4
    # a later message brings it back with only the new history
    new = await send(client, org.client, a, "new")
    assert a in await listed_ids(client, org.staff)
    assert await page_ids(client, org.staff, a) == [new["id"]]
    back = await conversation(client, org.staff, a)
    assert back["unread_count"] == 1 and back["last_message"]["id"] == new["id"]
    assert old[0]["id"] not in await page_ids(client, org.staff, a)
    # deleting twice is fine
    again = await client.delete(f"{API}/conversations/{a}", headers=org.staff.headers)
    assert again.status_code == 204


async def test_delete_of_an_empty_conversation_removes_it_from_the_list(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await open_conversation(client, org.staff, org.staff2)
    assert a in await listed_ids(client, org.staff)
    assert (
        await client.delete(f"{API}/conversations/{a}", headers=org.staff.headers)
    ).status_code == 204
    assert a not in await listed_ids(client, org.staff)
    assert a in await listed_ids(client, org.staff2)
    message = await send(client, org.staff2, a, "hello?")
    assert a in await listed_ids(client, org.staff)
    assert await page_ids(client, org.staff, a) == [message["id"]]


# --- for the realtime layer -------------------------------------------------------------------


async def test_fetch_conversation_is_the_http_shape_for_the_transactions_user(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await open_conversation(client, org.staff, org.client)
    await send(client, org.client, a, "ping")
    over_http = await conversation(client, org.staff, a)
    pool = await db.create_pool(migrated_database.app_url, max_size=1)
    try:
        staff = Identity(organisation_id=org.id, user_id=11, user_type="personnel")
        async with db.tenant(pool, staff, readonly=True) as conn:
            fetched = await fetch_conversation(conn, staff, a)
        stranger = Identity(organisation_id=org.id, user_id=13, user_type="personnel")
        async with db.tenant(pool, stranger, readonly=True) as conn:
            assert await fetch_conversation(conn, stranger, a) is None
    finally:
        await pool.close()
    import msgspec

    assert msgspec.to_builtins(fetched) == over_http


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/conversations/0", None),
        ("GET", "/conversations/-1", None),
        ("GET", "/conversations/99999999999999999999", None),
        ("GET", "/conversations/9223372036854775808", None),
        ("PATCH", "/conversations/0", {"archived": True}),
        ("DELETE", "/conversations/-5", None),
        ("POST", "/conversations/0/read", {}),
        ("GET", "/conversations?limit=0", None),
        ("GET", "/conversations?limit=201", None),
        ("GET", "/conversations?limit=abc", None),
        ("GET", "/conversations?archived=maybe", None),
        ("GET", "/conversations?cursor=garbage", None),
        ("GET", "/conversations?cursor=WyJzZWFyY2giLDFd", None),  # a search cursor
        ("GET", "/conversations?cursor=" + "A" * 500, None),
        ("POST", "/conversations", {"peer": {"user_id": "12", "user_type": "client"}}),
        ("POST", "/conversations", {"peer": {"user_id": 12, "user_type": "robot"}}),
        ("POST", "/conversations", {"peer": {"user_id": 0, "user_type": "client"}}),
        ("POST", "/conversations", {"peer": {"user_id": 2**63, "user_type": "client"}}),
        ("POST", "/conversations", {"peer": {"user_id": 12, "user_type": "client", "org": 1}}),
        ("POST", "/conversations", {"peer": {"user_id": 12, "user_type": "client"}, "x": 1}),
        ("POST", "/conversations", {}),
        ("POST", "/conversations", []),
        ("PATCH", "/conversations/1", {"archived": "yes"}),
        ("PATCH", "/conversations/1", {"pinned": True}),
        ("PATCH", "/conversations/1", {"archived": None}),
        ("POST", "/conversations/1/read", {"up_to_message_id": 0}),
        ("POST", "/conversations/1/read", {"up_to_message_id": "1"}),
    ],
)
async def test_bad_input_is_400_problem(
    client: AsyncTestClient[Any], method: str, path: str, body: Any
) -> None:
    response = await client.request(method, f"{API}{path}", json=body, headers=ORG_A.staff.headers)
    assert_problem(response, 400)


async def test_malformed_json_and_non_numeric_ids_are_4xx(client: AsyncTestClient[Any]) -> None:
    for content in (b'{"peer": ', b"\xff\xfe", b"null", b'{"peer": {"user_id": 1e400}}'):
        response = await client.post(
            f"{API}/conversations",
            content=content,
            headers={**ORG_A.staff.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400)
    assert_problem(await client.get(f"{API}/conversations/abc", headers=ORG_A.staff.headers), 404)


async def test_no_token_is_401(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.get(f"{API}/conversations"), 401)
    assert_problem(await client.post(f"{API}/conversations", json={}), 401)



async def test_delete_for_me_takes_locks_in_the_order_a_concurrent_read_does(
    migrated_database: Database, org: Org
) -> None:
    # The read's statement locks the unread messages, then (its trigger) the conversation row.
    # "Delete for me" must take them in the same order, or the two deadlock (40P01): run the
    # delete's first statement, let the read start and block on it, then the second statement.
    async with api_client(migrated_database, rate_limit_per_min=100_000) as c:
        a = await open_conversation(c, org.staff, org.client)
        for i in range(3):
            await send(c, org.client, a, f"unread {i}")
    staff = Identity(organisation_id=org.id, user_id=org.staff.user_id, user_type="personnel")
    pool = await db.create_pool(migrated_database.app_url, max_size=2)
    try:
        async with db.tenant(pool, staff) as deleting:
            newest = await deleting.fetchval(conversations.HIDE_MESSAGES_SQL, a)
            assert newest is not None

            async def read() -> int | None:
                async with db.tenant(pool, staff) as reading:
                    return await conversations.read_conversation(reading, a)

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.3)  # the read is now waiting on the delete's locks
            assert not reader.done()
            await deleting.execute(conversations.HIDE_CONVERSATION_SQL, a, newest)
        assert await asyncio.wait_for(reader, 10) == 3  # no deadlock: it ran after the delete
    finally:
        await pool.close()
    wrong = admin_sql(migrated_database.admin_url, "SELECT vechat.recount_unread(%s)", org.id)
    assert wrong == [(0,)]
