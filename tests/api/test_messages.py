"""Messages over HTTP: pages, sending every type, idempotency, edits, deletes, reads, search,
rate limit, bad input, read-state counters, and the cross-tenant matrix of every id route."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from tests.support.api import Caller, api_client, assert_problem, table_checksums
from tests.support.chat import (
    API,
    Org,
    admin_sql,
    conversation,
    get_json,
    insert_attachment,
    listed_ids,
    open_conversation,
    page_ids,
    seed_directory,
    send,
)
from tests.support.fixtures import Database
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls import db
from vechat_rls.chat.errors import RateLimited
from vechat_rls.chat.messages import MessageCreate, fetch_messages, send_message
from vechat_rls.config import Settings
from vechat_rls.identity import Identity

ORG_A, ORG_B = (Org(i) for i in new_organisation_ids(2))
MAX_CHARS = 50  # VECHAT_MAX_MESSAGE_CHARS for this module


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
    async with api_client(
        migrated_database, rate_limit_per_min=100_000, max_message_chars=MAX_CHARS, pool_max=8
    ) as c:
        yield c


@pytest.fixture
def org(migrated_database: Database, organisations: None) -> Iterator[Org]:
    org = Org(new_organisation_ids(1)[0])
    seed_directory(migrated_database.admin_url, org)
    yield org
    purge_organisations(migrated_database.admin_url, [org.id])


async def pair(client: AsyncTestClient[Any], org: Org) -> int:
    """The conversation staff ↔ client of `org`."""
    return await open_conversation(client, org.staff, org.client)


# --- sending and reading ----------------------------------------------------------------------


async def test_text_message_round_trip(client: AsyncTestClient[Any], org: Org) -> None:
    a = await pair(client, org)
    sent = await send(client, org.staff, a, "Bonjour 👋", client_id="c-1")
    assert sent == {
        "id": sent["id"],
        "conversation_id": a,
        "sender": {"user_id": 11, "user_type": "personnel"},
        "receiver": {"user_id": 12, "user_type": "client"},
        "message_type": "text",
        "body": "Bonjour 👋",
        "attachment": None,
        "location": None,
        "audio": None,
        "reply_to": None,
        "client_id": "c-1",
        "created_at": sent["created_at"],
        "edited_at": None,
        "deleted": False,
        "read_at": None,
    }
    assert sent["created_at"].endswith("Z")
    page = await get_json(client, org.client, f"/conversations/{a}/messages")
    assert page == {"items": [sent], "next_cursor": None}


async def test_send_by_receiver_opens_the_conversation_on_demand(
    client: AsyncTestClient[Any], org: Org
) -> None:
    first = await client.post(
        f"{API}/messages",
        json={"receiver": org.client2.participant, "body": "welcome"},
        headers=org.staff.headers,
    )
    assert first.status_code == 201, first.text
    a = first.json()["conversation_id"]
    assert await listed_ids(client, org.client2) == [a]
    reply = await client.post(
        f"{API}/messages",
        json={"receiver": org.staff.participant, "body": "thanks"},
        headers=org.client2.headers,
    )
    assert reply.status_code == 201 and reply.json()["conversation_id"] == a
    for receiver, status in (({"user_id": 13, "user_type": "personnel"}, 404), (org.staff2, 404)):
        participant = receiver.participant if isinstance(receiver, Caller) else receiver
        refused = await client.post(
            f"{API}/messages",
            json={"receiver": participant, "body": "hi"},
            headers=org.client.headers,
        )
        assert_problem(refused, status)
    self_talk = await client.post(
        f"{API}/messages",
        json={"receiver": org.staff.participant, "body": "me"},
        headers=org.staff.headers,
    )
    assert_problem(self_talk, 400)


async def test_a_bad_message_to_a_receiver_opens_no_conversation(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    response = await client.post(
        f"{API}/messages",
        json={"receiver": org.client.participant, "body": "  "},
        headers=org.staff.headers,
    )
    assert_problem(response, 422)
    count = "SELECT count(*) FROM vechat_conversations WHERE organisation_id = %s"
    assert admin_sql(migrated_database.admin_url, count, org.id) == [(0,)]


async def test_pages_are_chronological_with_before_and_after_cursors(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    ids = [(await send(client, org.staff, a, f"m{i}"))["id"] for i in range(7)]
    newest = await get_json(client, org.client, f"/conversations/{a}/messages", limit=3)
    assert [m["id"] for m in newest["items"]] == ids[4:]
    assert newest["next_cursor"] == str(ids[4])
    older = await get_json(
        client, org.client, f"/conversations/{a}/messages", limit=3, before=newest["next_cursor"]
    )
    assert [m["id"] for m in older["items"]] == ids[1:4]
    oldest = await get_json(
        client, org.client, f"/conversations/{a}/messages", limit=3, before=older["next_cursor"]
    )
    assert [m["id"] for m in oldest["items"]] == ids[:1] and oldest["next_cursor"] is None
    forward = await get_json(
        client, org.client, f"/conversations/{a}/messages", limit=4, after=ids[0]
    )
    assert [m["id"] for m in forward["items"]] == ids[1:5]
    assert forward["next_cursor"] == str(ids[4])
    rest = await get_json(
        client, org.client, f"/conversations/{a}/messages", limit=4, after=forward["next_cursor"]
    )
    assert [m["id"] for m in rest["items"]] == ids[5:] and rest["next_cursor"] is None
    window = await page_ids(client, org.client, a, after=ids[1], before=ids[4])
    assert window == ids[2:4]


async def test_message_pages_neither_repeat_nor_skip_while_messages_arrive(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    ids = [(await send(client, org.staff, a, f"m{i}"))["id"] for i in range(10)]
    seen: list[int] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"before": before} if before else {})}
        page = await get_json(client, org.client, f"/conversations/{a}/messages", **params)
        seen = [m["id"] for m in page["items"]] + seen
        await send(client, org.client, a, "meanwhile")  # newer than every page
        before = page["next_cursor"]
        if before is None:
            break
    assert seen == ids
    forward: list[int] = []
    after = ids[-1]
    arrived = [(await send(client, org.staff, a, f"n{i}"))["id"] for i in range(2)]
    while True:
        page = await get_json(
            client, org.client, f"/conversations/{a}/messages", limit=2, after=after
        )
        forward += [m["id"] for m in page["items"]]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
        if len(arrived) < 6:
            arrived.append((await send(client, org.staff, a, "late"))["id"])
    assert len(forward) == len(set(forward)) and forward == sorted(forward)
    assert set(arrived) <= set(forward)


# --- message types ----------------------------------------------------------------------------


async def test_media_messages_need_an_attachment_of_the_sender_whose_mime_fits(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    url = migrated_database.admin_url
    png = insert_attachment(url, org.staff, "image/png")
    pdf = insert_attachment(url, org.staff, "application/pdf")
    ogg = insert_attachment(url, org.staff, "audio/ogg")
    mp4 = insert_attachment(url, org.staff, "video/mp4")
    theirs = insert_attachment(url, org.client, "image/png")
    foreign = insert_attachment(url, ORG_B.staff, "image/png")

    image = await send(client, org.staff, a, "caption", message_type="image", attachment_id=png)
    assert image["attachment"] == {
        "id": png,
        "file_name": "upload.bin",
        "file_size": 8,
        "file_type": "image/png",
    }
    assert image["body"] == "caption"
    file = await send(client, org.staff, a, None, message_type="file", attachment_id=png)
    assert file["message_type"] == "file" and file["body"] is None
    video = await send(client, org.staff, a, None, message_type="video", attachment_id=mp4)
    assert video["attachment"]["file_type"] == "video/mp4"
    voice = await send(
        client,
        org.staff,
        a,
        None,
        message_type="voice",
        attachment_id=ogg,
        audio={"duration_s": 7, "waveform": "0,3,9,3"},
    )
    assert voice["message_type"] == "audio"
    assert voice["audio"] == {"duration_s": 7, "waveform": "0,3,9,3"}
    # the receiver sees the same message, attachment included
    as_receiver = await get_json(client, org.client, f"/conversations/{a}/messages")
    assert as_receiver["items"][-1] == voice

    mismatch = await send(
        client, org.staff, a, None, message_type="image", attachment_id=pdf, status=422
    )
    assert "image/" in mismatch["detail"]
    await send(client, org.staff, a, None, message_type="audio", attachment_id=png, status=422)
    await send(client, org.staff, a, None, message_type="video", attachment_id=ogg, status=422)
    for attachment in (theirs, foreign, 10**15):
        body = await send(
            client, org.staff, a, None, message_type="image", attachment_id=attachment, status=404
        )
        assert body["detail"] == f"attachment {attachment} not found"
    await send(client, org.staff, a, "no file", message_type="image", status=422)


async def test_location_messages_accept_zero_and_reject_impossible_coordinates(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    zero = await send(
        client,
        org.staff,
        a,
        None,
        message_type="location",
        location={"latitude": 0, "longitude": 0},
    )
    assert zero["location"] == {"latitude": 0.0, "longitude": 0.0, "accuracy": None}
    edge = await send(
        client,
        org.staff,
        a,
        "here",
        message_type="location",
        location={"latitude": -90, "longitude": 180, "accuracy": 0},
    )
    assert edge["location"] == {"latitude": -90.0, "longitude": 180.0, "accuracy": 0.0}
    paris = await send(
        client,
        org.staff,
        a,
        None,
        message_type="location",
        location={"latitude": 48.8583701, "longitude": 2.2944813, "accuracy": 12.5},
    )
    assert paris["location"] == {"latitude": 48.8583701, "longitude": 2.2944813, "accuracy": 12.5}
    for location in (
        '{"latitude": 90.0001, "longitude": 0}',
        '{"latitude": 0, "longitude": -180.5}',
        '{"latitude": 0, "longitude": 0, "accuracy": -1}',
        '{"latitude": 1e400, "longitude": 0}',
        '{"latitude": -1e400, "longitude": 0}',
        '{"latitude": 0, "longitude": 0, "accuracy": 1e400}',
        '{"latitude": NaN, "longitude": 0}',
        '{"latitude": "48.8", "longitude": 2}',
        '{"latitude": true, "longitude": 2}',
        '{"latitude": 1}',
        '{"latitude": 1, "longitude": 1, "altitude": 3}',
    ):
        response = await client.post(
            f"{API}/conversations/{a}/messages",
            content=f'{{"message_type": "location", "location": {location}}}'.encode(),
            headers={**org.staff.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400)
    await send(client, org.staff, a, None, message_type="location", location=None, status=422)
    await send(client, org.staff, a, None, message_type="location", status=422)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"body": "   \n\t"}, 422),
        ({"body": None}, 422),
        ({}, 422),
        ({"body": "x", "location": {"latitude": 1, "longitude": 1}}, 422),
        ({"body": "x", "audio": {"duration_s": 1}}, 422),
        ({"body": "x", "attachment_id": 1}, 422),
        ({"body": "x" * (MAX_CHARS + 1)}, 400),
        ({"body": 5}, 400),
        ({"body": "x", "message_type": "sticker"}, 400),
        ({"body": "x", "client_id": ""}, 400),
        ({"body": "x", "client_id": "c" * 65}, 400),
        ({"body": "x", "reply_to_id": 0}, 400),
        ({"body": "x", "reply_to_id": 2**63}, 400),
        ({"body": "x", "attachment_id": -1, "message_type": "file"}, 400),
        ({"message_type": "audio", "attachment_id": 1, "audio": {"duration_s": -1}}, 400),
        ({"body": "x", "sender_id": 99}, 400),
        ({"body": "x", "organisation_id": 1}, 400),
        ({"body": "a\u0000b"}, 400),
    ],
)
async def test_message_rules_are_422_and_bad_values_400(
    client: AsyncTestClient[Any], fields: dict[str, Any], status: int
) -> None:
    a = await pair(client, ORG_A)
    response = await client.post(
        f"{API}/conversations/{a}/messages", json=fields, headers=ORG_A.staff.headers
    )
    assert_problem(response, status)


async def test_body_of_exactly_the_limit_and_sql_looking_text_are_stored_verbatim(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    longest = await send(client, org.staff, a, "é" * MAX_CHARS)
    assert longest["body"] == "é" * MAX_CHARS
    evil = "'; DROP TABLE vechat_messages; -- $1 %s {}"
    stored = await send(client, org.staff, a, evil, client_id="'); --")
    assert stored["body"] == evil and stored["client_id"] == "'); --"
    rows = admin_sql(
        migrated_database.admin_url,
        "SELECT message FROM vechat_messages WHERE organisation_id = %s AND id = %s",
        org.id,
        stored["id"],
    )
    assert rows == [(evil,)]
    found = await get_json(client, org.client, "/messages/search", q="DROP TABLE")
    assert [m["id"] for m in found["items"]] == [stored["id"]]
    harmless = await get_json(client, org.client, "/messages/search", q="') OR 1=1 --")
    assert harmless["items"] == [] or all(m["conversation_id"] == a for m in harmless["items"])


async def test_replies_quote_a_message_of_the_same_conversation_only(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    other = await open_conversation(client, org.staff, org.staff2)
    original = await send(client, org.client, a, "question " + "x" * 40)
    elsewhere = await send(client, org.staff, other, "colleague")
    reply = await send(client, org.staff, a, "answer", reply_to_id=original["id"])
    assert reply["reply_to"] == {
        "id": original["id"],
        "sender": {"user_id": 12, "user_type": "client"},
        "body_preview": original["body"][:100],
        "message_type": "text",
        "deleted": False,
    }
    problem = await send(client, org.staff, a, "x", reply_to_id=elsewhere["id"], status=404)
    assert problem["detail"] == f"message {elsewhere['id']} in conversation {a} not found"
    await send(client, org.staff, a, "x", reply_to_id=10**15, status=404)
    # once the original is deleted for everyone the quote keeps no text
    await client.delete(
        f"{API}/messages/{original['id']}", params={"for": "everyone"}, headers=org.client.headers
    )
    (after,) = [
        m
        for m in (await get_json(client, org.staff, f"/conversations/{a}/messages"))["items"]
        if m["id"] == reply["id"]
    ]
    assert after["reply_to"]["body_preview"] is None and after["reply_to"]["id"] == original["id"]


async def test_a_media_message_can_reply_and_each_missing_part_is_told_apart(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    """The send statement comes in four variants (with or without an attachment, with or without
    a reply): the one with both returns the same message as a read, and says which part failed."""
    a = await pair(client, org)
    other = await open_conversation(client, org.staff, org.staff2)
    png = insert_attachment(migrated_database.admin_url, org.staff, "image/png")
    pdf = insert_attachment(migrated_database.admin_url, org.staff, "application/pdf")
    original = await send(client, org.client, a, "question")
    elsewhere = await send(client, org.staff, other, "colleague")

    both = await send(
        client, org.staff, a, "see", message_type="image", attachment_id=png,
        reply_to_id=original["id"],
    )
    assert both["attachment"]["id"] == png and both["reply_to"]["id"] == original["id"]
    read = await get_json(client, org.staff, f"/conversations/{a}/messages")
    assert read["items"][-1] == both
    await send(
        client, org.staff, a, None, message_type="image", attachment_id=pdf,
        reply_to_id=original["id"], status=422,
    )
    await send(
        client, org.staff, a, None, message_type="image", attachment_id=png,
        reply_to_id=elsewhere["id"], status=404,
    )
    await send(
        client, org.staff, a, None, message_type="image", attachment_id=10**15,
        reply_to_id=original["id"], status=404,
    )
    after = await get_json(client, org.staff, f"/conversations/{a}/messages")
    assert after["items"][-1]["id"] == both["id"]  # nothing written by the refused sends


async def test_a_reply_says_when_the_message_it_quotes_was_deleted_for_everyone(
    client: AsyncTestClient[Any], org: Org
) -> None:
    """`reply_to.deleted`, not only a null preview (which an empty body could not tell apart)."""
    a = await pair(client, org)
    original = await send(client, org.client, a, "soon gone")
    reply = await send(client, org.staff, a, "answer", reply_to_id=original["id"])
    assert reply["reply_to"]["deleted"] is False
    deleted = await client.delete(
        f"{API}/messages/{original['id']}", params={"for": "everyone"}, headers=org.client.headers
    )
    assert deleted.status_code == 204
    for reader in (org.staff, org.client):
        (after,) = [
            m
            for m in (await get_json(client, reader, f"/conversations/{a}/messages"))["items"]
            if m["id"] == reply["id"]
        ]
        assert after["reply_to"]["deleted"] is True, after["reply_to"]
        assert after["reply_to"]["body_preview"] is None


# --- idempotency and rate limit ---------------------------------------------------------------


async def test_twenty_concurrent_sends_with_one_client_id_create_one_message(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)

    async def attempt() -> Any:
        return await client.post(
            f"{API}/conversations/{a}/messages",
            json={"body": "only once", "client_id": "retry-me"},
            headers=org.staff.headers,
        )

    responses = await asyncio.gather(*[attempt() for _ in range(20)])
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], [
        r.text for r in responses if r.status_code >= 300
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    count = "SELECT count(*) FROM vechat_messages WHERE organisation_id = %s"
    assert admin_sql(migrated_database.admin_url, count, org.id) == [(1,)]
    again = await send(client, org.staff, a, "different text", client_id="retry-me", status=200)
    assert again["body"] == "only once"
    # the same client_id from the peer is the peer's own key
    await send(client, org.client, a, "mine", client_id="retry-me", status=201)
    assert (await conversation(client, org.client, a))["unread_count"] == 1


async def test_client_id_reused_for_another_conversation_is_409(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    b = await open_conversation(client, org.staff, org.staff2)
    await send(client, org.staff, a, "one", client_id="k")
    await send(client, org.staff, b, "two", client_id="k", status=409)


async def test_rate_limit_is_429_with_retry_after_and_counts_only_accepted_sends(
    migrated_database: Database, org: Org
) -> None:
    async with api_client(migrated_database, rate_limit_per_min=3) as limited:
        a = await pair(limited, org)
        await send(limited, org.staff, a, "   ", status=422)  # refused: does not count
        for i in range(3):
            await send(limited, org.staff, a, f"m{i}")
        response = await limited.post(
            f"{API}/conversations/{a}/messages", json={"body": "m3"}, headers=org.staff.headers
        )
        assert_problem(response, 429)
        assert 1 <= int(response.headers["retry-after"]) <= 60
        await send(limited, org.client, a, "the peer has their own budget")
    assert len(await page_ids_admin(migrated_database, org)) == 4


async def page_ids_admin(database: Database, org: Org) -> list[int]:
    rows = admin_sql(
        database.admin_url,
        "SELECT id FROM vechat_messages WHERE organisation_id = %s ORDER BY id",
        org.id,
    )
    return [int(r[0]) for r in rows]


# --- edits, deletes, reads --------------------------------------------------------------------


async def test_edit_keeps_every_version_and_only_the_sender_may_edit_text(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    sent = await send(client, org.staff, a, "v1")
    for text in ("v2", "v3"):
        response = await client.patch(
            f"{API}/messages/{sent['id']}", json={"body": text}, headers=org.staff.headers
        )
        assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["body"] == "v3" and edited["edited_at"] is not None
    history = await get_json(client, org.client, f"/messages/{sent['id']}/edits")
    assert [e["body"] for e in history["items"]] == ["v1", "v2"]
    assert history["next_cursor"] is None
    first = await get_json(client, org.client, f"/messages/{sent['id']}/edits", limit=1)
    assert [e["body"] for e in first["items"]] == ["v1"] and first["next_cursor"]
    rest = await get_json(
        client, org.client, f"/messages/{sent['id']}/edits", limit=1, cursor=first["next_cursor"]
    )
    assert [e["body"] for e in rest["items"]] == ["v2"]

    by_receiver = await client.patch(
        f"{API}/messages/{sent['id']}", json={"body": "hijack"}, headers=org.client.headers
    )
    assert_problem(by_receiver, 403)
    for body, status in (("   ", 422), ("x" * (MAX_CHARS + 1), 400)):
        response = await client.patch(
            f"{API}/messages/{sent['id']}", json={"body": body}, headers=org.staff.headers
        )
        assert_problem(response, status)
    png = insert_attachment(migrated_database.admin_url, org.staff, "image/png")
    image = await send(client, org.staff, a, "cap", message_type="image", attachment_id=png)
    not_text = await client.patch(
        f"{API}/messages/{image['id']}", json={"body": "new caption"}, headers=org.staff.headers
    )
    assert_problem(not_text, 422)


async def test_edit_after_the_window_is_422(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    sent = await send(client, org.staff, a, "old")
    admin_sql(
        migrated_database.admin_url,
        "UPDATE vechat_messages SET created_at = now() - interval '901 seconds' "
        "WHERE organisation_id = %s AND id = %s",
        org.id,
        sent["id"],
    )
    response = await client.patch(
        f"{API}/messages/{sent['id']}", json={"body": "late"}, headers=org.staff.headers
    )
    assert "window" in assert_problem(response, 422)["detail"]
    assert (await get_json(client, org.staff, f"/messages/{sent['id']}/edits"))["items"] == []


async def test_delete_for_everyone_leaves_a_tombstone_for_both(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    png = insert_attachment(migrated_database.admin_url, org.staff, "image/png")
    sent = await send(client, org.staff, a, "secret", message_type="image", attachment_id=png)
    await client.patch(
        f"{API}/messages/{sent['id']}", json={"body": "x"}, headers=org.staff.headers
    )
    refused = await client.delete(
        f"{API}/messages/{sent['id']}", params={"for": "everyone"}, headers=org.client.headers
    )
    assert_problem(refused, 403)
    assert (await conversation(client, org.client, a))["unread_count"] == 1
    for _ in range(2):  # twice: still 204
        response = await client.delete(
            f"{API}/messages/{sent['id']}", params={"for": "everyone"}, headers=org.staff.headers
        )
        assert response.status_code == 204, response.text
    for caller in (org.staff, org.client):
        (tombstone,) = (await get_json(client, caller, f"/conversations/{a}/messages"))["items"]
        assert tombstone["deleted"] is True
        assert tombstone["id"] == sent["id"] and tombstone["message_type"] == "image"
        for field in ("body", "attachment", "location", "audio", "reply_to"):
            assert tombstone[field] is None
    assert (await conversation(client, org.client, a))["unread_count"] == 0
    assert (await get_json(client, org.client, f"/messages/{sent['id']}/edits"))["items"] == []
    edit = await client.patch(
        f"{API}/messages/{sent['id']}", json={"body": "revive"}, headers=org.staff.headers
    )
    assert_problem(edit, 422)


async def test_delete_for_me_hides_the_message_for_the_caller_only(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    keep = await send(client, org.client, a, "keep")
    drop = await send(client, org.client, a, "drop")
    assert (await conversation(client, org.staff, a))["unread_count"] == 2
    response = await client.delete(f"{API}/messages/{drop['id']}", headers=org.staff.headers)
    assert response.status_code == 204
    assert await page_ids(client, org.staff, a) == [keep["id"]]
    assert await page_ids(client, org.client, a) == [keep["id"], drop["id"]]
    staff_view = await conversation(client, org.staff, a)
    assert staff_view["unread_count"] == 1 and staff_view["last_message"]["id"] == keep["id"]
    assert (await conversation(client, org.client, a))["last_message"]["id"] == drop["id"]
    # the sender hides their own copy with for=me too
    await client.delete(
        f"{API}/messages/{keep['id']}", params={"for": "me"}, headers=org.client.headers
    )
    assert await page_ids(client, org.client, a) == [drop["id"]]
    assert await page_ids(client, org.staff, a) == [keep["id"]]


async def test_mark_read_counts_only_messages_the_caller_received(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    incoming = [await send(client, org.client, a, f"in{i}") for i in range(3)]
    outgoing = await send(client, org.staff, a, "out")
    ids = [m["id"] for m in incoming[:2]] + [outgoing["id"], 10**15]
    response = await client.post(
        f"{API}/messages/read", json={"message_ids": ids}, headers=org.staff.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"marked": 2}
    again = await client.post(
        f"{API}/messages/read", json={"message_ids": ids}, headers=org.staff.headers
    )
    assert again.json() == {"marked": 0}
    assert (await conversation(client, org.staff, a))["unread_count"] == 1
    as_sender = await get_json(client, org.client, f"/conversations/{a}/messages")
    read_at = {m["id"]: m["read_at"] for m in as_sender["items"]}
    assert read_at[incoming[0]["id"]] and read_at[incoming[1]["id"]]
    assert read_at[incoming[2]["id"]] is None and read_at[outgoing["id"]] is None


async def test_read_time_is_hidden_from_the_sender_when_the_reader_hides_read_receipts(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    sent = await send(client, org.client, a, "did you read this?")
    settings_off = await client.patch(
        f"{API}/settings", json={"show_read_receipts": False}, headers=org.staff.headers
    )
    assert settings_off.status_code == 200, settings_off.text
    marked = await client.post(
        f"{API}/messages/read", json={"message_ids": [sent["id"]]}, headers=org.staff.headers
    )
    assert marked.json() == {"marked": 1}

    def read_at(page: dict[str, Any]) -> Any:
        return {m["id"]: m["read_at"] for m in page["items"]}[sent["id"]]

    assert read_at(await get_json(client, org.client, f"/conversations/{a}/messages")) is None
    assert read_at(await get_json(client, org.staff, f"/conversations/{a}/messages")) is not None
    settings_on = await client.patch(
        f"{API}/settings", json={"show_read_receipts": True}, headers=org.staff.headers
    )
    assert settings_on.status_code == 200, settings_on.text
    assert read_at(await get_json(client, org.client, f"/conversations/{a}/messages")) is not None


# --- search -----------------------------------------------------------------------------------


async def test_search_finds_only_what_the_caller_is_shown(
    client: AsyncTestClient[Any], org: Org
) -> None:
    a = await pair(client, org)
    b = await open_conversation(client, org.staff, org.staff2)
    c = await open_conversation(client, org.staff2, org.staff3)
    hit_a = await send(client, org.client, a, "the invoice is late")
    hidden = await send(client, org.client, a, "another invoice")
    gone = await send(client, org.staff, a, "invoice attached")
    hit_b = await send(client, org.staff2, b, "Invoice for March")
    await send(client, org.staff2, c, "invoice between colleagues")  # not staff's conversation
    await send(client, org.staff, a, "unrelated")
    await client.delete(f"{API}/messages/{hidden['id']}", headers=org.staff.headers)
    await client.delete(
        f"{API}/messages/{gone['id']}", params={"for": "everyone"}, headers=org.staff.headers
    )

    found = await get_json(client, org.staff, "/messages/search", q="INVOICE")
    assert [m["id"] for m in found["items"]] == [hit_b["id"], hit_a["id"]]
    only_a = await get_json(client, org.staff, "/messages/search", q="invoice", conversation_id=a)
    assert [m["id"] for m in only_a["items"]] == [hit_a["id"]]
    peer = await get_json(client, org.client, "/messages/search", q="invoice")
    assert [m["id"] for m in peer["items"]] == [hidden["id"], hit_a["id"]]
    phrase = await get_json(client, org.staff, "/messages/search", q='"invoice is late" -march')
    assert [m["id"] for m in phrase["items"]] == [hit_a["id"]]
    page1 = await get_json(client, org.staff, "/messages/search", q="invoice", limit=1)
    page2 = await get_json(
        client, org.staff, "/messages/search", q="invoice", limit=1, cursor=page1["next_cursor"]
    )
    assert [m["id"] for m in page1["items"] + page2["items"]] == [hit_b["id"], hit_a["id"]]
    assert page2["next_cursor"] is None
    empty = await get_json(client, org.staff, "/messages/search", q="nothing", conversation_id=a)
    assert empty == {"items": [], "next_cursor": None}
    not_mine = await client.get(
        f"{API}/messages/search",
        params={"q": "invoice", "conversation_id": c},
        headers=org.staff.headers,
    )
    assert_problem(not_mine, 404)


# --- read state: counters after any mix of operations equal a recount -------------------------


UNREAD_SQL = """
SELECT count(*) FROM vechat_messages
WHERE organisation_id = %s AND conversation_id = %s AND receiver_id = %s AND receiver_type = %s
  AND NOT is_read AND deleted_at IS NULL AND NOT is_deleted_by_receiver
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_counters_after_random_sends_reads_and_deletes_equal_a_recount(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database, seed: int
) -> None:
    rng = random.Random(seed)
    url = migrated_database.admin_url
    pairs = [(org.staff, org.client), (org.staff, org.staff2), (org.staff2, org.client2)]
    conversations = {p: await open_conversation(client, *p) for p in pairs}
    sent: dict[int, list[dict[str, Any]]] = {c: [] for c in conversations.values()}
    for step in range(60):
        (x, y) = rng.choice(pairs)
        a = conversations[(x, y)]
        me = x if rng.random() < 0.5 else y
        operation = rng.choices(
            ["send", "read", "read-up-to", "mark", "hide", "delete", "hide-conversation"],
            weights=[8, 1, 2, 2, 2, 2, 1],
        )[0]
        mine = [m for m in sent[a] if m["sender"]["user_id"] == me.user_id]
        theirs = [m for m in sent[a] if m["sender"]["user_id"] != me.user_id]
        if operation == "send" or not sent[a]:
            sent[a].append(await send(client, me, a, f"step {step}"))
        elif operation == "read":
            await client.post(f"{API}/conversations/{a}/read", json={}, headers=me.headers)
        elif operation == "read-up-to":
            up_to = rng.choice(sent[a])["id"]
            await client.post(
                f"{API}/conversations/{a}/read",
                json={"up_to_message_id": up_to},
                headers=me.headers,
            )
        elif operation == "mark" and theirs:
            ids = [m["id"] for m in rng.sample(theirs, k=min(3, len(theirs)))]
            await client.post(f"{API}/messages/read", json={"message_ids": ids}, headers=me.headers)
        elif operation == "hide":
            target = rng.choice(sent[a])["id"]
            response = await client.delete(f"{API}/messages/{target}", headers=me.headers)
            assert response.status_code == 204
        elif operation == "delete" and mine:
            target = rng.choice(mine)["id"]
            response = await client.delete(
                f"{API}/messages/{target}", params={"for": "everyone"}, headers=me.headers
            )
            assert response.status_code == 204
        elif operation == "hide-conversation":
            response = await client.delete(f"{API}/conversations/{a}", headers=me.headers)
            assert response.status_code == 204
    assert admin_sql(url, "SELECT vechat.recount_unread(%s)", org.id) == [(0,)]
    for (x, y), a in conversations.items():
        for me in (x, y):
            expected = admin_sql(url, UNREAD_SQL, org.id, a, me.user_id, me.user_type)[0][0]
            view = await conversation(client, me, a)
            assert view["unread_count"] == expected, (me, a)
            shown = (await get_json(client, me, f"/conversations/{a}/messages", limit=200))["items"]
            unread_shown = [
                m
                for m in shown
                if m["receiver"]["user_id"] == me.user_id
                and m["read_at"] is None
                and not m["deleted"]
            ]
            assert len(unread_shown) == expected, (me, a)


# --- for the realtime layer -------------------------------------------------------------------


async def test_send_message_and_fetch_messages_work_on_a_plain_tenant_connection(
    client: AsyncTestClient[Any], org: Org, migrated_database: Database
) -> None:
    a = await pair(client, org)
    settings = Settings(jwt_secret="x" * 32, rate_limit_per_min=2)
    staff = Identity(organisation_id=org.id, user_id=11, user_type="personnel")
    client_identity = Identity(organisation_id=org.id, user_id=12, user_type="client")
    pool = await db.create_pool(migrated_database.app_url, max_size=2)
    statements: list[str] = []

    def log(query: Any) -> None:
        statements.append(query.query)

    try:
        async with db.tenant(pool, staff) as conn:
            conn.add_query_logger(log)
            message, created = await send_message(
                conn, staff, a, MessageCreate(body="over the socket", client_id="ws-1"), settings
            )
            await asyncio.sleep(0)  # loggers are called soon, not at once
            sent_with = len(statements)
            conn.remove_query_logger(log)
        assert created and message.body == "over the socket"
        assert sent_with == 1  # the whole send is one statement (+ BEGIN batch and COMMIT)
        async with db.tenant(pool, staff) as conn:
            statements.clear()
            conn.add_query_logger(log)
            again, created = await send_message(
                conn, staff, a, MessageCreate(body="retry", client_id="ws-1"), settings
            )
            await asyncio.sleep(0)
            assert len(statements) == 2  # a repeated client_id looks the original up
            conn.remove_query_logger(log)
        assert not created and again == message
        with pytest.raises(RateLimited):
            async with db.tenant(pool, staff) as conn:
                await send_message(conn, staff, a, MessageCreate(body="3rd"), settings)
        async with db.tenant(pool, client_identity, readonly=True) as conn:
            (seen,) = await fetch_messages(conn, [message.id, 10**15])
        outsider = Identity(organisation_id=ORG_B.id, user_id=12, user_type="client")
        async with db.tenant(pool, outsider, readonly=True) as conn:
            assert await fetch_messages(conn, [message.id]) == []
    finally:
        await pool.close()
    assert seen == message
    over_http = await get_json(client, org.client, f"/conversations/{a}/messages")
    assert over_http["items"] == [msgspec.to_builtins(message)]


# --- bad input --------------------------------------------------------------------------------


BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/conversations/0/messages", None),
    ("GET", "/conversations/-1/messages", None),
    ("GET", "/conversations/99999999999999999999/messages", None),
    ("GET", "/conversations/1/messages?before=0", None),
    ("GET", "/conversations/1/messages?after=-3", None),
    ("GET", "/conversations/1/messages?before=9223372036854775808", None),
    ("GET", "/conversations/1/messages?limit=0", None),
    ("GET", "/conversations/1/messages?limit=201", None),
    ("GET", "/conversations/1/messages?before=abc", None),
    ("POST", "/conversations/0/messages", {"body": "x"}),
    ("POST", "/conversations/-1/messages", {"body": "x"}),
    ("POST", "/conversations/9223372036854775808/messages", {"body": "x"}),
    ("PATCH", "/messages/0", {"body": "x"}),
    ("PATCH", "/messages/99999999999999999999", {"body": "x"}),
    ("PATCH", "/messages/1", {"body": 1}),
    ("PATCH", "/messages/1", {}),
    ("PATCH", "/messages/1", {"body": "x", "message_type": "image"}),
    ("GET", "/messages/0/edits", None),
    ("GET", "/messages/1/edits?cursor=%%%", None),
    ("GET", "/messages/1/edits?cursor=WyJlZGl0cyIsLTFd", None),  # ["edits",-1]
    ("DELETE", "/messages/-1", None),
    ("DELETE", "/messages/1?for=all", None),
    ("POST", "/messages/read", {"message_ids": []}),
    ("POST", "/messages/read", {"message_ids": ["1"]}),
    ("POST", "/messages/read", {"message_ids": [0]}),
    ("POST", "/messages/read", {"message_ids": [2**63]}),
    ("POST", "/messages/read", {"message_ids": list(range(1, 1002))}),
    ("POST", "/messages/read", {"ids": [1]}),
    ("POST", "/messages/read", [1, 2]),
    ("POST", "/messages", {"body": "x"}),
    ("POST", "/messages", {"receiver": {"user_id": 12}, "body": "x"}),
    ("POST", "/messages", {"receiver": {"user_id": -12, "user_type": "client"}, "body": "x"}),
    ("GET", "/messages/search", None),
    ("GET", "/messages/search?q=", None),
    ("GET", "/messages/search?q=%20%20", None),
    ("GET", "/messages/search?q=" + "x" * 501, None),
    ("GET", "/messages/search?q=a&cursor=garbage", None),
    ("GET", "/messages/search?q=a&cursor=WyJjb252ZXJzYXRpb25zIiwxLDJd", None),
    ("GET", "/messages/search?q=a&conversation_id=0", None),
    ("GET", "/messages/search?q=a&limit=1000", None),
    ("GET", "/messages/search?q=a%00b", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
async def test_bad_input_is_400_problem_never_500(
    client: AsyncTestClient[Any], method: str, path: str, body: Any
) -> None:
    response = await client.request(method, f"{API}{path}", json=body, headers=ORG_A.staff.headers)
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "content",
    [b'{"body": ', b'{"body": "\xff"}', b"\xff\xfe", b'{"body": "x"}{}', b"", b"[]", b"nul"],
)
async def test_malformed_bodies_are_400(client: AsyncTestClient[Any], content: bytes) -> None:
    a = await pair(client, ORG_A)
    for path in (f"/conversations/{a}/messages", "/messages", "/messages/read"):
        response = await client.post(
            f"{API}{path}",
            content=content,
            headers={**ORG_A.staff.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400)


async def test_openapi_documents_the_message_and_conversation_routes(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/read",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/messages",
        "/api/v1/messages/read",
        "/api/v1/messages/search",
        "/api/v1/messages/{message_id}",
        "/api/v1/messages/{message_id}/edits",
    ):
        assert path in paths, path
    assert "Message" in schema["components"]["schemas"]


# --- the cross-tenant matrix ------------------------------------------------------------------


@dataclass(frozen=True)
class Victim:
    """What ORG_A's staff and client own: a conversation, messages, an attachment."""

    conversation_id: int
    message_id: int  # staff → client, edited once
    incoming_id: int  # client → staff
    attachment_id: int  # uploaded by staff


@dataclass(frozen=True)
class Attacker:
    caller: Caller
    own_conversation_id: int  # a conversation of the attacker's own, for reply/attachment probes


Request = Callable[[Victim, Attacker], tuple[str, str, Any]]

ENDPOINTS: dict[str, Request] = {
    "get-conversation": lambda v, a: ("GET", f"/conversations/{v.conversation_id}", None),
    "patch-conversation": lambda v, a: (
        "PATCH",
        f"/conversations/{v.conversation_id}",
        {"archived": True, "muted": True},
    ),
    "read-conversation": lambda v, a: ("POST", f"/conversations/{v.conversation_id}/read", {}),
    "read-conversation-up-to": lambda v, a: (
        "POST",
        f"/conversations/{v.conversation_id}/read",
        {"up_to_message_id": v.incoming_id},
    ),
    "delete-conversation": lambda v, a: ("DELETE", f"/conversations/{v.conversation_id}", None),
    "list-messages": lambda v, a: ("GET", f"/conversations/{v.conversation_id}/messages", None),
    "list-messages-before": lambda v, a: (
        "GET",
        f"/conversations/{v.conversation_id}/messages?before={v.incoming_id + 1}",
        None,
    ),
    "send-to-conversation": lambda v, a: (
        "POST",
        f"/conversations/{v.conversation_id}/messages",
        {"body": "intrusion", "client_id": "x-1"},
    ),
    "reply-to-foreign-message": lambda v, a: (
        "POST",
        f"/conversations/{a.own_conversation_id}/messages",
        {"body": "quote", "reply_to_id": v.message_id},
    ),
    "attach-foreign-file": lambda v, a: (
        "POST",
        f"/conversations/{a.own_conversation_id}/messages",
        {"message_type": "file", "attachment_id": v.attachment_id},
    ),
    "edit-message": lambda v, a: ("PATCH", f"/messages/{v.message_id}", {"body": "forged"}),
    "message-edits": lambda v, a: ("GET", f"/messages/{v.message_id}/edits", None),
    "delete-for-everyone": lambda v, a: (
        "DELETE",
        f"/messages/{v.message_id}?for=everyone",
        None,
    ),
    "delete-for-me": lambda v, a: ("DELETE", f"/messages/{v.incoming_id}?for=me", None),
    "search-in-conversation": lambda v, a: (
        "GET",
        f"/messages/search?q=hello&conversation_id={v.conversation_id}",
        None,
    ),
}

NOT_FOUND_DETAIL: dict[str, Callable[[Victim, Attacker], str]] = {
    "reply-to-foreign-message": lambda v, a: (
        f"message {v.message_id} in conversation {a.own_conversation_id} not found"
    ),
    "attach-foreign-file": lambda v, a: f"attachment {v.attachment_id} not found",
    "edit-message": lambda v, a: f"message {v.message_id} not found",
    "message-edits": lambda v, a: f"message {v.message_id} not found",
    "delete-for-everyone": lambda v, a: f"message {v.message_id} not found",
    "delete-for-me": lambda v, a: f"message {v.incoming_id} not found",
}

ATTACKERS = ["other-organisation-same-ids", "other-organisation-client", "same-organisation"]


@pytest.fixture(scope="module")
async def matrix(
    client: AsyncTestClient[Any], migrated_database: Database
) -> tuple[Victim, dict[str, Attacker]]:
    a = await open_conversation(client, ORG_A.staff, ORG_A.client)
    message = await send(client, ORG_A.staff, a, "hello there", client_id="x-1")
    await client.patch(
        f"{API}/messages/{message['id']}", json={"body": "hello!"}, headers=ORG_A.staff.headers
    )
    incoming = await send(client, ORG_A.client, a, "hello back")
    attachment = insert_attachment(migrated_database.admin_url, ORG_A.staff, "application/pdf")
    victim = Victim(a, message["id"], incoming["id"], attachment)
    attackers = {
        # organisation B's staff 11 and client 12 have the very ids of A's participants
        "other-organisation-same-ids": Attacker(
            ORG_B.staff, await open_conversation(client, ORG_B.staff, ORG_B.client)
        ),
        "other-organisation-client": Attacker(
            ORG_B.client, await open_conversation(client, ORG_B.client, ORG_B.staff)
        ),
        # a colleague of the same organisation who is not in the conversation
        "same-organisation": Attacker(
            ORG_A.staff2, await open_conversation(client, ORG_A.staff2, ORG_A.staff3)
        ),
    }
    return victim, attackers


@pytest.mark.parametrize("attacker_name", ATTACKERS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_ids_of_others_are_404_and_change_nothing(
    client: AsyncTestClient[Any],
    migrated_database: Database,
    matrix: tuple[Victim, dict[str, Attacker]],
    endpoint: str,
    attacker_name: str,
) -> None:
    victim, attackers = matrix
    attacker = attackers[attacker_name]
    method, path, body = ENDPOINTS[endpoint](victim, attacker)
    before = table_checksums(migrated_database.admin_url)
    response = await client.request(
        method, f"{API}{path}", json=body, headers=attacker.caller.headers
    )
    problem = assert_problem(response, 404)
    detail = NOT_FOUND_DETAIL.get(
        endpoint, lambda v, a: f"conversation {v.conversation_id} not found"
    )
    assert problem["detail"] == detail(victim, attacker)
    assert "hello" not in response.text
    assert table_checksums(migrated_database.admin_url) == before


@pytest.mark.parametrize("attacker_name", ATTACKERS)
async def test_marking_others_messages_read_marks_nothing(
    client: AsyncTestClient[Any],
    migrated_database: Database,
    matrix: tuple[Victim, dict[str, Attacker]],
    attacker_name: str,
) -> None:
    """`POST /messages/read` takes a list and marks only what the caller received: ids of others
    are skipped exactly like ids that do not exist (`marked` counts, it does not reveal)."""
    victim, attackers = matrix
    before = table_checksums(migrated_database.admin_url)
    response = await client.post(
        f"{API}/messages/read",
        json={"message_ids": [victim.message_id, victim.incoming_id]},
        headers=attackers[attacker_name].caller.headers,
    )
    assert response.status_code == 200 and response.json() == {"marked": 0}
    assert table_checksums(migrated_database.admin_url) == before


async def test_the_owners_still_reach_everything_the_matrix_probed(
    client: AsyncTestClient[Any], matrix: tuple[Victim, dict[str, Attacker]]
) -> None:
    victim, _ = matrix
    for owner in (ORG_A.staff, ORG_A.client):
        ids = await page_ids(client, owner, victim.conversation_id)
        assert ids == [victim.message_id, victim.incoming_id]
    edits = await get_json(client, ORG_A.client, f"/messages/{victim.message_id}/edits")
    assert [e["body"] for e in edits["items"]] == ["hello there"]


# --- fuzzing: whatever arrives, the answer is never a 500 -------------------------------------

FIELD_NAMES = [
    "body",
    "message_type",
    "client_id",
    "attachment_id",
    "location",
    "latitude",
    "longitude",
    "accuracy",
    "audio",
    "duration_s",
    "waveform",
    "reply_to_id",
    "receiver",
    "user_id",
    "user_type",
    "message_ids",
    "up_to_message_id",
    "peer",
    "archived",
    "muted",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["text", "image", "voice", "location", "personnel", "client", "'; --"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=12,
)
IDS = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65).map(str),
    st.sampled_from(["1", "0", "abc", "1e3", "%20", "9223372036854775807"]),
)
ROUTES = [
    ("GET", "/conversations"),
    ("POST", "/conversations"),
    ("GET", "/conversations/{id}"),
    ("PATCH", "/conversations/{id}"),
    ("DELETE", "/conversations/{id}"),
    ("POST", "/conversations/{id}/read"),
    ("GET", "/conversations/{id}/messages"),
    ("POST", "/conversations/{id}/messages"),
    ("POST", "/messages"),
    ("POST", "/messages/read"),
    ("GET", "/messages/search"),
    ("PATCH", "/messages/{id}"),
    ("GET", "/messages/{id}/edits"),
    ("DELETE", "/messages/{id}"),
]
QUERY = st.dictionaries(
    st.sampled_from(
        ["limit", "cursor", "before", "after", "archived", "q", "conversation_id", "for"]
    ),
    st.text(max_size=20) | IDS,
    max_size=3,
)


@pytest.fixture(scope="module")
def fuzz_client(migrated_database: Database, organisations: None) -> Iterator[Any]:
    from litestar.testing import TestClient

    from tests.support.api import api_settings
    from vechat_rls.api.app import create_app

    org = Org(new_organisation_ids(1)[0])
    seed_directory(migrated_database.admin_url, org)
    app = create_app(api_settings(migrated_database.app_url, rate_limit_per_min=100_000))
    with TestClient(app) as c:
        conversation_id = c.post(
            f"{API}/conversations", json={"peer": org.client.participant}, headers=org.staff.headers
        ).json()["id"]
        c.post(
            f"{API}/conversations/{conversation_id}/messages",
            json={"body": "seed"},
            headers=org.staff.headers,
        )
        yield c, org, conversation_id
    purge_organisations(migrated_database.admin_url, [org.id])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    path_id=IDS,
    own_id=st.booleans(),
    query=QUERY,
    body=JSON_VALUES,
    raw=st.none() | st.binary(max_size=40),
)
def test_fuzzed_requests_never_answer_500(
    fuzz_client: Any,
    route: tuple[str, str],
    path_id: str,
    own_id: bool,
    query: dict[str, str],
    body: Any,
    raw: bytes | None,
) -> None:
    c, org, conversation_id = fuzz_client
    method, template = route
    path = template.format(id=str(conversation_id) if own_id else path_id)
    headers = {**org.staff.headers, "Content-Type": "application/json"}
    content = raw if raw is not None else msgspec.json.encode(body)
    response = c.request(
        method,
        f"{API}{path}",
        params=query,
        content=content if method != "GET" else None,
        headers=headers,
    )
    assert response.status_code < 500, (method, path, query, content, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
