"""Realtime over `/api/v1/ws`: real `vechat-rls serve` processes, PostgreSQL, WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import Caller
from tests.support.chat import Org, admin_sql, seed_directory
from tests.support.fixtures import Database
from tests.support.realtime import API, Client, Server, running, ws_client
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls.auth import mint_token
from vechat_rls.db import context, seal
from vechat_rls.identity import Identity
from vechat_rls.realtime.listener import CHANNELS

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class World:
    servers: list[Server]
    database: Database
    org: Org
    other: Org  # another organisation with the same user ids
    conversation_id: int  # org.staff <-> org.client

    @property
    def a(self) -> Server:
        return self.servers[0]

    @property
    def b(self) -> Server:
        return self.servers[1]


# Every test runs against both doorbells (realtime/ringer.py): the coalesced one the API rings
# after its commits, and the trigger's NOTIFY in every writing transaction.
@pytest.fixture(scope="module", params=["coalesced", "transaction"])
def world(request: pytest.FixtureRequest, migrated_database: Database) -> Iterator[World]:
    org, other = (Org(i) for i in new_organisation_ids(2))
    for o in (org, other):
        seed_directory(migrated_database.admin_url, o)
    with running(
        migrated_database.app_url, 2, VECHAT_REALTIME_POLL_S="1", VECHAT_DOORBELL=request.param
    ) as servers:
        response = httpx.post(
            f"{servers[0].base}{API}/conversations",
            json={"peer": org.client.participant},
            headers=org.staff.headers,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        yield World(servers, migrated_database, org, other, int(response.json()["id"]))
    purge_organisations(migrated_database.admin_url, [org.id, other.id])


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world.a.base + API, timeout=10) as client:
        yield client


async def send_http(
    http: httpx.AsyncClient, caller: Caller, conversation_id: int, body: str, **fields: Any
) -> dict[str, Any]:
    response = await http.post(
        f"/conversations/{conversation_id}/messages",
        json={"body": body, **fields},
        headers=caller.headers,
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


@contextlib.asynccontextmanager
async def settings_changed(
    http: httpx.AsyncClient, caller: Caller, **fields: bool
) -> AsyncIterator[None]:
    """`caller`'s settings set to `fields` for the block, then back to the defaults (true)."""
    response = await http.patch("/settings", json=fields, headers=caller.headers)
    assert response.status_code == 200, response.text
    try:
        yield
    finally:
        await http.patch(
            "/settings", json={name: True for name in fields}, headers=caller.headers
        )


def created_ids(client: Client, after_seq: int = 0) -> list[int]:
    return [
        f["data"]["id"]
        for f in client.events()
        if f["type"] == "message.created" and f["seq"] > after_seq
    ]


def assert_gapless(client: Client, start: int) -> None:
    seqs = client.seqs()
    assert seqs == list(range(start + 1, start + 1 + len(seqs))), seqs


# --- delivery ---------------------------------------------------------------------------------


async def test_messages_over_http_and_ws_arrive_once_in_order_on_every_tab(
    world: World, http: httpx.AsyncClient
) -> None:
    org, other = world.org, world.other
    async with (
        ws_client(world.a, org.staff) as tab1,
        ws_client(world.a, org.staff) as tab2,
        ws_client(world.b, org.client) as receiver,
        ws_client(world.a, other.staff) as stranger_staff,
        ws_client(world.b, other.client) as stranger_client,
    ):
        starts = {c: await c.ready() for c in (tab1, tab2, receiver)}
        await stranger_staff.ready()
        await stranger_client.ready()
        sent: list[int] = []
        for i in range(5):
            message = await send_http(http, org.staff, world.conversation_id, f"http {i}")
            sent.append(message["id"])
            await tab1.send(
                {
                    "type": "send",
                    "conversation_id": world.conversation_id,
                    "client_id": f"tab1-{i}",
                    "body": f"ws {i}",
                }
            )
            acked = await _ack(tab1, f"tab1-{i}")
            sent.append(acked["data"]["id"])
        for client in (tab1, tab2, receiver):
            await client.wait_for(lambda _, c=client: len(created_ids(c)) >= len(sent))
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive by now
        for client in (tab1, tab2, receiver):
            assert created_ids(client) == sent
            assert_gapless(client, starts[client])
        assert [f["data"]["body"] for f in receiver.events()][:2] == ["http 0", "ws 0"]
        # Same numeric user ids in another organisation: nothing at all but their own ready.
        for stranger in (stranger_staff, stranger_client):
            assert [f["type"] for f in stranger.frames] == ["ready"]


async def _ack(client: Client, client_id: str) -> dict[str, Any]:
    def found(frames: list[dict[str, Any]]) -> bool:
        return any(f.get("client_id") == client_id for f in frames)

    await client.wait_for(found)
    [frame] = [f for f in client.frames if f.get("client_id") == client_id]
    assert frame["type"] == "ack", frame
    return frame


async def test_sender_on_one_process_receiver_on_the_other(world: World) -> None:
    org = world.org
    async with ws_client(world.a, org.staff) as sender, ws_client(world.b, org.client) as receiver:
        start = await receiver.ready()
        await sender.ready()
        for i in range(3):
            await sender.send(
                {
                    "type": "send",
                    "conversation_id": world.conversation_id,
                    "client_id": f"two-{i}",
                    "body": f"across {i}",
                }
            )
        events = await receiver.events_through(start + 3)
        assert [e["data"]["body"] for e in events] == ["across 0", "across 1", "across 2"]
        assert [e["data"]["client_id"] for e in events] == ["two-0", "two-1", "two-2"]
        for i in range(3):
            assert (await _ack(sender, f"two-{i}"))["data"]["body"] == f"across {i}"


async def test_events_without_a_doorbell_arrive_by_the_safety_net_poll(world: World) -> None:
    # A commit whose ring never came (the process died between COMMIT and its coalesced ring):
    # the hub must still find the events, by its poll of the cursors (every second here).
    org = world.org
    async with ws_client(world.b, org.client) as client:
        start = await client.ready()
        conn = await asyncpg.connect(world.database.app_url)
        try:
            async with conn.transaction():
                staff = Identity(
                    organisation_id=org.id, user_id=org.staff.user_id, user_type="personnel"
                )
                await conn.execute(
                    "SELECT vechat.enter($1), set_config('vechat.doorbell', 'off', true)",
                    await context.sign_for(conn, staff),
                )
                message_id = await conn.fetchval(
                    """INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id,
                           sender_type, receiver_id, receiver_type, message)
                       VALUES ($1, $2, $3, 'personnel', $4, 'client', 'quiet') RETURNING id""",
                    org.id,
                    world.conversation_id,
                    org.staff.user_id,
                    org.client.user_id,
                )
        finally:
            await conn.close()
        [event] = await client.events_through(start + 1, timeout=5)
        assert (event["type"], event["data"]["id"], event["data"]["body"]) == (
            "message.created",
            message_id,
            "quiet",
        )


# --- resume -----------------------------------------------------------------------------------


async def test_resume_with_since_replays_exactly_what_was_missed(
    world: World, http: httpx.AsyncClient
) -> None:
    org = world.org
    async with ws_client(world.b, org.client) as first:
        seen = await first.ready()
    sent = [
        (await send_http(http, org.staff, world.conversation_id, f"missed {i}"))["id"]
        for i in range(200)
    ]
    async with ws_client(world.b, org.client, since=seen) as resumed:
        ready = await resumed.ready(timeout=20)
        assert ready == seen + 200
        assert created_ids(resumed) == sent
        assert resumed.seqs() == list(range(seen + 1, seen + 201))
        types = [f["type"] for f in resumed.frames]
        assert types.index("ready") == 200  # after the replay, before anything live
    # Resuming from the end replays nothing.
    async with ws_client(world.a, org.client, since=ready) as current:
        assert await current.ready() == ready
        assert current.events() == []


async def test_since_older_than_the_retention_gets_reset(world: World) -> None:
    org = world.org
    admin = world.database.admin_url
    async with ws_client(world.a, org.staff) as before:
        old = await before.ready()
    assert old > 2
    # Age the staff member's log beyond the 7-day retention; connecting prunes it.
    admin_sql(
        admin,
        """UPDATE vechat_events SET created_at = now() - interval '8 days'
           WHERE organisation_id = %s AND recipient_type = %s AND recipient_id = %s""",
        org.id,
        org.staff.user_type,
        org.staff.user_id,
    )
    async with ws_client(world.a, org.staff, since=1) as stale:
        assert await stale.ready() == old
        assert [f["type"] for f in stale.frames] == ["reset", "ready"]
    [(pruned, remaining)] = admin_sql(
        admin,
        """SELECT c.pruned_seq,
                  (SELECT count(*) FROM vechat_events e WHERE e.organisation_id = c.organisation_id
                     AND e.recipient_type = c.user_type AND e.recipient_id = c.user_id)
           FROM vechat_event_cursors c
           WHERE c.organisation_id = %s AND c.user_type = %s AND c.user_id = %s""",
        org.id,
        org.staff.user_type,
        org.staff.user_id,
    )
    assert (pruned, remaining) == (old, 0)
    # Resuming exactly at the retention mark is fine: nothing before it was missed.
    async with ws_client(world.a, org.staff, since=old) as fine:
        assert await fine.ready() == old
        assert [f["type"] for f in fine.frames] == ["ready"]


# --- protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["", "?access_token=not-a-jwt", "?access_token={expired}", "?access_token={wrong_key}"],
)
async def test_bad_or_missing_token_is_closed_4401(world: World, query: str) -> None:
    org = world.org
    expired = mint_token(
        key="api-test-secret-long-enough-for-hs256!",
        organisation_id=org.id,
        user_id=11,
        user_type="personnel",
        ttl_s=-10,
    )
    wrong_key = mint_token(
        key="another-secret-long-enough-for-hs256!!",
        organisation_id=org.id,
        user_id=11,
        user_type="personnel",
    )
    url = world.a.ws_base + query.format(expired=expired, wrong_key=wrong_key)
    async with connect(url, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_socket_is_closed_4401_when_its_token_expires(world: World) -> None:
    org = world.org
    token = mint_token(
        key="api-test-secret-long-enough-for-hs256!",
        organisation_id=org.id,
        user_id=org.staff.user_id,
        user_type="personnel",
        ttl_s=2,
    )
    async with connect(f"{world.a.ws_base}?access_token={token}", open_timeout=10) as ws:
        client = Client(ws)
        await client.ready()
        assert await client.closed(timeout=6) == 4401


async def test_ping_and_invalid_frames_never_break_the_socket(world: World) -> None:
    async with ws_client(world.a, world.org.staff) as client:
        await client.ready()
        bad: list[Any] = [
            "not json",
            "[1, 2]",
            '{"no": "type"}',
            '{"type": "dance"}',
            '{"type": "typing", "conversation_id": "1", "is_typing": true}',
            '{"type": "read", "conversation_id": 0}',
            '{"type": "send", "conversation_id": 1}',
            '{"type": "send", "conversation_id": 1, "client_id": "x", "bogus": 1}',
            '{"type": "presence", "status": "asleep"}',
        ]
        for text in bad:
            await client.ws.send(text)
        await client.ws.send(b"\xff\xfe binary")
        await client.send({"type": "ping"})
        await client.frame("pong")
        errors = [f for f in client.frames if f["type"] == "error"]
        assert len(errors) == len(bad) + 1
        assert all(e["data"]["status"] == 400 and e["data"]["detail"] for e in errors)
        assert client.closed_code is None


async def test_deeply_nested_frames_get_a_400_error_frame_and_the_socket_stays(
    world: World,
) -> None:
    """Nested past the decoder's stack (RecursionError): the client's fault, a 400 like any
    invalid frame, not a 500."""
    deep_array = "[" * 5_000 + "]" * 5_000
    deep_object = '{"a": ' * 5_000 + "1" + "}" * 5_000
    async with ws_client(world.a, world.org.staff) as client:
        await client.ready()
        for text in (
            '{"type": "ping", "x": ' + deep_array + "}",
            '{"type": "send", "conversation_id": 1, "client_id": "deep-1", "body": '
            + deep_object
            + "}",
            deep_array,
        ):
            await client.ws.send(text)
        await client.send({"type": "ping"})
        await client.frame("pong")
        errors = [f for f in client.frames if f["type"] == "error"]
        assert [e["data"]["status"] for e in errors] == [400, 400, 400], errors
        assert client.closed_code is None


async def test_sending_into_someone_elses_conversation_is_a_404_error_with_client_id(
    world: World,
) -> None:
    # The same conversation id, seen from another organisation's user with the same numeric id.
    async with ws_client(world.a, world.other.staff) as client:
        await client.ready()
        await client.send(
            {
                "type": "send",
                "conversation_id": world.conversation_id,
                "client_id": "foreign-1",
                "body": "hello?",
            }
        )
        frame = await _error(client, "foreign-1")
        assert frame["data"]["status"] == 404
        await client.send(
            {"type": "typing", "conversation_id": world.conversation_id, "is_typing": True}
        )
        await client.send({"type": "read", "conversation_id": world.conversation_id})
        await client.wait_for(lambda fs: len([f for f in fs if f["type"] == "error"]) == 3)
        assert {f["data"]["status"] for f in client.frames if f["type"] == "error"} == {404}


async def _error(client: Client, client_id: str) -> dict[str, Any]:
    await client.wait_for(lambda fs: any(f.get("client_id") == client_id for f in fs))
    [frame] = [f for f in client.frames if f.get("client_id") == client_id]
    assert frame["type"] == "error", frame
    return frame


async def test_typing_reaches_the_peer_on_another_process_and_expires_after_5_s(
    world: World,
) -> None:
    org = world.org
    async with ws_client(world.a, org.staff) as staff, ws_client(world.b, org.client) as client:
        await staff.ready()
        await client.ready()
        await staff.send(
            {"type": "typing", "conversation_id": world.conversation_id, "is_typing": True}
        )
        loop = asyncio.get_running_loop()
        typing = await client.frame("typing", is_typing=True)
        started = loop.time()
        assert typing["data"] == {
            "conversation_id": world.conversation_id,
            "user": org.staff.participant,
            "is_typing": True,
        }
        stopped = await client.frame("typing", timeout=8, is_typing=False)
        elapsed = loop.time() - started
        assert 4.5 <= elapsed <= 6.5, elapsed
        assert stopped["data"]["user"] == org.staff.participant
        assert not [f for f in staff.frames if f["type"] == "typing"]  # not echoed to the typist


# --- receipts, archive, presence --------------------------------------------------------------


async def test_read_receipts_honour_show_read_receipts(
    world: World, http: httpx.AsyncClient
) -> None:
    org = world.org
    async with ws_client(world.a, org.staff) as staff, ws_client(world.b, org.client) as client:
        await staff.ready()
        start = await client.ready()
        message = await send_http(http, org.staff, world.conversation_id, "read me")
        await client.events_through(start + 1)
        await client.send({"type": "read", "conversation_id": world.conversation_id})
        receipt = await staff.frame("messages.read")
        assert receipt["data"]["conversation_id"] == world.conversation_id
        assert receipt["data"]["reader"] == org.client.participant
        assert receipt["data"]["up_to_message_id"] >= message["id"]
        assert receipt["data"]["read_at"]
        await client.frame("messages.read")  # the reader's own tabs hear of it too
        updated = await client.frame("conversation.updated")
        assert updated["data"]["id"] == world.conversation_id
        assert updated["data"]["unread_count"] == 0

        async with settings_changed(http, org.client, show_read_receipts=False):
            mark = len(staff.frames)
            client_mark = len(client.frames)
            await send_http(http, org.staff, world.conversation_id, "read me quietly")
            await client.frame("message.created", after=client_mark)
            await client.send({"type": "read", "conversation_id": world.conversation_id})
            await client.frame("messages.read", after=client_mark)  # the reader still hears
            await asyncio.sleep(0.5)
            assert not [f for f in staff.frames[mark:] if f["type"] == "messages.read"]


async def test_message_frames_show_each_recipient_what_they_may_see(
    world: World, http: httpx.AsyncClient
) -> None:
    """One read serves sender and receiver; `read_at` is still each one's own view of it."""
    org = world.org
    async with (
        settings_changed(http, org.client, show_read_receipts=False),
        ws_client(world.a, org.staff) as staff,
        ws_client(world.b, org.client) as client,
    ):
        await staff.ready()
        await client.ready()
        message = await send_http(http, org.staff, world.conversation_id, "edit me later")
        response = await http.post(
            f"/conversations/{world.conversation_id}/read", json={}, headers=org.client.headers
        )
        assert response.status_code == 200, response.text
        staff_mark, client_mark = len(staff.frames), len(client.frames)
        response = await http.patch(
            f"/messages/{message['id']}", json={"body": "edited"}, headers=org.staff.headers
        )
        assert response.status_code == 200, response.text
        seen_by_staff = await staff.frame("message.updated", after=staff_mark)
        seen_by_client = await client.frame("message.updated", after=client_mark)
        for frame in (seen_by_staff, seen_by_client):
            assert frame["data"]["id"] == message["id"]
            assert frame["data"]["body"] == "edited" and frame["data"]["edited_at"]
        assert seen_by_client["data"]["read_at"]  # the reader knows when they read it
        assert seen_by_staff["data"]["read_at"] is None  # receipts hidden from the sender
        # The HTTP API shows the sender the same.
        response = await http.get(
            f"/conversations/{world.conversation_id}/messages", headers=org.staff.headers
        )
        shown = {m["id"]: m for m in response.json()["items"]}
        assert shown[message["id"]]["read_at"] is None


async def test_unarchive_and_unread_count_arrive_as_conversation_updated(
    world: World, http: httpx.AsyncClient
) -> None:
    org = world.org
    response = await http.patch(
        f"/conversations/{world.conversation_id}",
        json={"archived": True},
        headers=org.client.headers,
    )
    assert response.status_code == 200 and response.json()["archived"] is True
    async with ws_client(world.b, org.client) as client:
        await client.ready()
        await send_http(http, org.staff, world.conversation_id, "wake up")
        updated = await client.frame("conversation.updated")
        assert updated["data"]["id"] == world.conversation_id
        assert updated["data"]["archived"] is False
        assert updated["data"]["unread_count"] >= 1
        assert updated["data"]["last_message"]["body"] == "wake up"


async def test_presence_follows_sockets_and_reaches_peers_only(world: World) -> None:
    org = world.org
    async with (
        ws_client(world.b, org.client) as peer,
        ws_client(world.b, org.staff2) as not_a_peer,
    ):
        await peer.ready()
        await not_a_peer.ready()
        async with ws_client(world.a, org.staff) as staff:
            await staff.ready()
            online = await peer.frame("presence", user_id=org.staff.user_id, status="online")
            assert online["data"]["user_type"] == "personnel"
            assert online["data"]["last_seen"]
            mark = len(peer.frames)
            await staff.send({"type": "presence", "status": "busy"})
            await peer.frame("presence", after=mark, user_id=org.staff.user_id, status="busy")
        mark = len(peer.frames)
        offline = await peer.frame(
            "presence", after=mark, user_id=org.staff.user_id, status="offline"
        )
        assert offline["data"]["last_seen"]
        assert not [f for f in not_a_peer.frames if f["type"] == "presence"]


async def test_presence_set_over_http_reaches_peers_on_every_process(
    world: World, http: httpx.AsyncClient
) -> None:
    org = world.org
    async with ws_client(world.b, org.client) as peer:
        await peer.ready()
        response = await http.put(
            "/presence", json={"status": "away"}, headers=org.staff.headers
        )
        assert response.status_code == 200, response.text
        away = await peer.frame("presence", user_id=org.staff.user_id, status="away")
        assert away["data"]["user_type"] == "personnel" and away["data"]["last_seen"]
        mark = len(peer.frames)
        again = await http.put("/presence", json={"status": "away"}, headers=org.staff.headers)
        assert again.status_code == 200  # a heartbeat changes nothing others see: no frame
        await asyncio.sleep(0.5)
        assert not [f for f in peer.frames[mark:] if f["type"] == "presence"]
    await http.put("/presence", json={"status": "offline"}, headers=org.staff.headers)


async def test_hidden_presence_sends_no_frames_and_reads_offline(
    world: World, http: httpx.AsyncClient
) -> None:
    org = world.org
    async with (
        settings_changed(http, org.staff, show_online_status=False),
        ws_client(world.b, org.client) as peer,
    ):
        await peer.ready()
        async with ws_client(world.a, org.staff) as staff:
            await staff.ready()
            seen = await http.get(
                "/presence", params={"users": "personnel:11"}, headers=org.client.headers
            )
            [shown] = seen.json()
            assert (shown["status"], shown["last_seen"]) == ("offline", None)
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)
        assert not [f for f in peer.frames if f["type"] == "presence"]


# --- what the doorbell reveals ----------------------------------------------------------------


async def test_a_raw_listen_session_sees_no_organisation_user_or_conversation_id(
    world: World, http: httpx.AsyncClient
) -> None:
    """Any login may LISTEN (here the app role itself, as an auditor's or an attacker's psql
    would): every payload is sealed or a signed doorbell, of a padded length, and names nothing."""
    payloads: list[tuple[str, str]] = []
    listener = await asyncpg.connect(world.database.app_url)
    try:
        for channel in CHANNELS:
            await listener.add_listener(
                channel, lambda _c, _p, ch, payload: payloads.append((ch, payload))
            )
        secret = "the-secret-body-ZXQ"
        org = world.org
        async with ws_client(world.a, org.staff) as staff, ws_client(world.b, org.client) as c:
            await staff.ready()
            await c.ready()
            message = await send_http(http, org.staff, world.conversation_id, secret)
            await http.patch(
                f"/messages/{message['id']}", json={"body": secret + "2"}, headers=org.staff.headers
            )
            await staff.send(
                {"type": "typing", "conversation_id": world.conversation_id, "is_typing": True}
            )
            await c.send({"type": "read", "conversation_id": world.conversation_id})
            await staff.frame("messages.read")
            await c.frame("typing")
        await asyncio.sleep(0.5)
    finally:
        await listener.close()
    channels = {channel for channel, _ in payloads}
    assert channels == set(CHANNELS), channels
    # The organisation's, the conversation's and the message's ids are long enough to look for in
    # the text (user ids of two digits would turn up in any base64 by chance): none is there.
    ids = {org.id, world.conversation_id, message["id"]}
    for channel, payload in payloads:
        assert re.fullmatch(r"s1\|test\|[A-Za-z0-9_=-]+|d1\|test\|\d+\|[0-9a-f]{64}", payload)
        assert secret not in payload
        assert not [i for i in ids if str(i) in payload], payload
        if payload.startswith("s1|"):  # 12 bytes of nonce, 16 of tag, the rest padded
            assert (len(base64.urlsafe_b64decode(payload[8:])) - 28) % seal.PAD == 0
        # What the service itself reads there: ids only, checked again before any socket.
        opened = seal.open_(channel, payload)
        assert opened is seal.DOORBELL or _ids_only(channel, opened)


def _ids_only(channel: str, value: Any) -> bool:
    """Numbers, the two user types and the typing flag — nothing that could be content."""
    assert isinstance(value, dict)
    allowed = {
        "vechat_events": {"o", "e"},
        "vechat_presence": {"o", "u"},
        "vechat_typing": {"o", "c", "f", "t", "y"},
    }[channel]
    assert set(value) == allowed, value

    def leaves(v: Any) -> Iterator[Any]:
        if isinstance(v, list):
            for item in v:
                yield from leaves(item)
        elif isinstance(v, dict):
            for item in v.values():
                yield from leaves(item)
        else:
            yield v

    for leaf in leaves(value):
        assert isinstance(leaf, (int, bool)) or leaf in ("personnel", "client"), leaf
    return True


async def test_a_frame_larger_than_the_body_limit_closes_1009(world: World) -> None:
    async with ws_client(world.a, world.org.staff) as client:
        await client.ready()
        await client.ws.send('{"type": "ping", "pad": "' + "x" * (1024 * 1024) + '"}')
        assert await client.closed() == 1009


def _dropped(server: Server) -> dict[str, float]:
    """`vechat_notifications_dropped_total` of one server process, by channel."""
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    found = re.findall(r'^vechat_notifications_dropped_total\{channel="(\w+)"\} (\S+)$', text, re.M)
    return {channel: float(value) for channel, value in found}


async def test_forged_notifications_reach_no_socket_and_are_counted(world: World) -> None:
    """NOTIFY from psql — a login that is not the service, and the app role itself — on every
    channel, with what the service once sent in the clear (and worse: negative ids, a user type
    that is none, a conversation the users are not in): no socket gets a frame, every process
    drops and counts each one."""
    org, conversation = world.org, world.conversation_id
    staff = ["personnel", org.staff.user_id]
    client = ["client", org.client.user_id]
    forged = [
        ("vechat_typing", {"o": org.id, "c": conversation, "f": staff, "t": client, "y": True}),
        ("vechat_typing", {"o": org.id, "c": -1, "f": ["root", -5], "t": client, "y": True}),
        ("vechat_presence", {"o": org.id, "u": staff}),
        ("vechat_events", {"o": org.id, "e": [[*client, 0]]}),
        ("vechat_events", "d1|test|1|" + "0" * 64),  # a doorbell nobody signed
    ]
    logins = [world.database.app_url]
    admin_sql(world.database.admin_url,
              "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'forger_test') "
              "THEN CREATE ROLE forger_test LOGIN PASSWORD 'forger_test'; END IF; END $$")
    logins.append(re.sub(r"//[^@]+@", "//forger_test:forger_test@", world.database.app_url))
    before = [_dropped(s) for s in world.servers]
    try:
        async with ws_client(world.b, org.client) as c, ws_client(world.a, org.staff) as s:
            await c.ready()
            await s.ready()
            # The genuine one first: the staff member came online.
            await c.frame("presence", user_id=org.staff.user_id, status="online")
            await asyncio.sleep(0.5)
            mark_c, mark_s = len(c.frames), len(s.frames)
            for url in logins:
                conn = await asyncpg.connect(url)
                try:
                    for channel, payload in forged:
                        text = payload if isinstance(payload, str) else json.dumps(payload)
                        await conn.execute("SELECT pg_notify($1, $2)", channel, text)
                finally:
                    await conn.close()
            await asyncio.sleep(1.5)
            ephemeral = [f for f in c.frames[mark_c:] + s.frames[mark_s:]
                         if f["type"] in ("typing", "presence")]
            assert ephemeral == []
    finally:
        admin_sql(world.database.admin_url, "DROP ROLE IF EXISTS forger_test")
    for server, was in zip(world.servers, before, strict=True):
        now = _dropped(server)
        for channel in CHANNELS:
            sent = len(logins) * sum(1 for ch, _ in forged if ch == channel)
            assert now.get(channel, 0) - was.get(channel, 0) == sent, (channel, was, now)
