"""The doorbell modes: coalesced rings far fewer NOTIFYs than commits; both deliver exactly once.

Servers here poll only every 60 s, so whatever arrives within seconds was rung by a doorbell —
the module-scoped servers of tests/realtime/test_realtime.py poll every second, which would hide
a silent one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api import Caller
from tests.support.chat import Org, seed_directory
from tests.support.fixtures import Database
from tests.support.realtime import API, Client, Server, running, ws_client
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls.config import ConfigError, Settings
from vechat_rls.db import context, seal
from vechat_rls.identity import Identity

BURST_PER_CONVERSATION = 70  # x 3 conversations
SENDERS_PER_CONVERSATION = 7
# Wider than the default (2 ms), so that batches hold several commits even on a slow machine.
BATCH_MS = 50


@dataclass(frozen=True)
class Pair:
    mode: str
    servers: list[Server]
    database: Database
    org: Org
    conversations: list[tuple[Caller, Caller, int]]  # (sender, receiver, conversation id)


@pytest.fixture(scope="module", params=["coalesced", "transaction"])
def pair(request: pytest.FixtureRequest, migrated_database: Database) -> Iterator[Pair]:
    mode: str = request.param
    org = Org(new_organisation_ids(1)[0])
    seed_directory(migrated_database.admin_url, org)
    with running(
        migrated_database.app_url,
        2,
        VECHAT_DOORBELL=mode,
        VECHAT_DOORBELL_BATCH_MS=str(BATCH_MS),
        VECHAT_REALTIME_POLL_S="60",
    ) as servers:
        conversations = []
        for sender, receiver in ((org.staff, org.client), (org.staff, org.client2),
                                 (org.staff2, org.staff3)):
            response = httpx.post(
                f"{servers[0].base}{API}/conversations",
                json={"peer": receiver.participant},
                headers=sender.headers,
                timeout=10,
            )
            assert response.status_code in (200, 201), response.text
            conversations.append((sender, receiver, int(response.json()["id"])))
        yield Pair(mode, servers, migrated_database, org, conversations)
    purge_organisations(migrated_database.admin_url, [org.id])


@pytest.fixture
async def notifications(pair: Pair) -> AsyncIterator[list[dict[str, Any]]]:
    """Every `vechat_events` notification of the pair's organisation, opened with the suite's key
    (a listener without it reads nothing: db/seal.py); the database's doorbells, which name
    no organisation, as {"doorbell": True}."""
    heard: list[dict[str, Any]] = []

    def on_notify(_conn: object, _pid: int, _channel: str, text: str) -> None:
        notice = seal.open_("vechat_events", text)
        if notice is seal.DOORBELL:
            heard.append({"doorbell": True})
        elif notice is not None and notice["o"] == pair.org.id:
            heard.append(notice)

    conn = await asyncpg.connect(pair.database.admin_url)
    try:
        await conn.add_listener("vechat_events", on_notify)
        yield heard
    finally:
        await conn.close()


def created(client: Client) -> list[int]:
    return [f["data"]["id"] for f in client.events() if f["type"] == "message.created"]


@pytest.mark.slow
async def test_a_burst_of_sends_rings_far_fewer_notifies_and_delivers_each_once(
    pair: Pair, notifications: list[dict[str, Any]]
) -> None:
    a, b = pair.servers
    receivers = {
        # Receivers on both processes, each on the other one than half of its senders.
        conversation_id: (b if i % 2 == 0 else a, receiver)
        for i, (_sender, receiver, conversation_id) in enumerate(pair.conversations)
    }
    async with (
        ws_client(*receivers[pair.conversations[0][2]]) as r0,
        ws_client(*receivers[pair.conversations[1][2]]) as r1,
        ws_client(*receivers[pair.conversations[2][2]]) as r2,
    ):
        clients = [r0, r1, r2]
        starts = [await c.ready() for c in clients]
        notifications.clear()
        sent: dict[int, list[int]] = {cid: [] for _, _, cid in pair.conversations}

        async def send_some(http: httpx.AsyncClient, sender: Caller, conversation_id: int,
                            worker: int) -> None:
            for n in range(BURST_PER_CONVERSATION // SENDERS_PER_CONVERSATION):
                response = await http.post(
                    f"{API}/conversations/{conversation_id}/messages",
                    json={"body": f"burst {worker}.{n}"},
                    headers=sender.headers,
                )
                assert response.status_code == 201, response.text
                sent[conversation_id].append(int(response.json()["id"]))

        async with (
            httpx.AsyncClient(base_url=a.base, timeout=20) as via_a,
            httpx.AsyncClient(base_url=b.base, timeout=20) as via_b,
        ):
            began = time.monotonic()
            await asyncio.gather(*(
                send_some(via_a if w % 2 else via_b, sender, conversation_id, w)
                for sender, _receiver, conversation_id in pair.conversations
                for w in range(SENDERS_PER_CONVERSATION)
            ))
            elapsed = time.monotonic() - began
        total = sum(len(ids) for ids in sent.values())
        assert total == 3 * BURST_PER_CONVERSATION
        for client, (_s, _r, conversation_id) in zip(clients, pair.conversations, strict=True):
            expected = len(sent[conversation_id])
            await client.wait_for(lambda _, c=client, n=expected: len(created(c)) >= n, timeout=15)
        await asyncio.sleep(0.5)  # a duplicate would arrive by now
        for client, start, (_s, _r, conversation_id) in zip(
            clients, starts, pair.conversations, strict=True
        ):
            got = created(client)
            assert len(got) == len(set(got)), "a message arrived twice"
            assert sorted(got) == sorted(sent[conversation_id])
            assert client.seqs() == list(range(start + 1, start + 1 + len(client.seqs())))
    if pair.mode == "coalesced":
        # At most one NOTIFY commit per process and batch window (plus the last) -- far fewer
        # than one per commit -- naming the senders and receivers (seq 0: "read what is there").
        assert notifications, "the coalesced doorbell never rang"
        windows = 2 * (elapsed / (BATCH_MS / 1000) + 2)
        assert len(notifications) <= windows, (len(notifications), windows, total)
        assert len(notifications) <= total / 3, (len(notifications), total)
        participants = {(c.user_type, c.user_id) for s, r, _ in pair.conversations for c in (s, r)}
        named = [tuple(e) for n in notifications for e in n["e"]]
        assert {(t, i) for t, i, _ in named} == participants
        assert {seq for _, _, seq in named} == {0}
    else:
        # The trigger: every commit rings a doorbell that names no one.
        assert len(notifications) >= total, (len(notifications), total)
        assert all(n == {"doorbell": True} for n in notifications)


@pytest.mark.slow
async def test_a_write_that_names_no_recipients_rings_the_whole_organisation(
    pair: Pair, notifications: list[dict[str, Any]]
) -> None:
    sender, receiver, conversation_id = pair.conversations[0]
    a, b = pair.servers
    async with ws_client(b, sender) as client, httpx.AsyncClient(base_url=a.base) as http:
        start = await client.ready()
        response = await http.post(
            f"{API}/conversations/{conversation_id}/messages",
            json={"body": "read me"},
            headers=sender.headers,
        )
        assert response.status_code == 201, response.text
        notifications.clear()
        # A read receipt: its events are for the sender (messages.read) and the reader.
        response = await http.post(
            f"{API}/conversations/{conversation_id}/read", headers=receiver.headers
        )
        assert response.status_code == 200, response.text
        await client.frame("messages.read", timeout=5, after=0)  # the poll is 60 s away
        assert client.seqs()[0] == start + 1
    if pair.mode == "coalesced":
        # The frame can arrive before this test's own LISTEN connection has handled the ring (an
        # earlier ring may have delivered it, the read's own waiting out the batch window): wait.
        whole = {"o": pair.org.id, "e": []}
        deadline = time.monotonic() + 5
        while whole not in notifications and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert whole in notifications, notifications


@pytest.mark.slow
async def test_writes_from_outside_the_api_keep_the_trigger_doorbell(
    pair: Pair, notifications: list[dict[str, Any]]
) -> None:
    sender, receiver, conversation_id = pair.conversations[0]
    async with ws_client(pair.servers[1], receiver) as client:
        start = await client.ready()
        conn = await asyncpg.connect(pair.database.app_url)  # like psql: no vechat.doorbell set
        try:
            async with conn.transaction():
                acting = Identity(
                    organisation_id=pair.org.id,
                    user_id=sender.user_id,
                    user_type="personnel" if sender.user_type == "personnel" else "client",
                )
                await conn.execute(
                    "SELECT vechat.enter($1)", await context.sign_for(conn, acting)
                )
                message_id = await conn.fetchval(
                    """INSERT INTO vechat_messages (organisation_id, conversation_id, sender_id,
                           sender_type, receiver_id, receiver_type, message)
                       VALUES ($1, $2, $3, $4, $5, $6, 'from psql') RETURNING id""",
                    pair.org.id,
                    conversation_id,
                    sender.user_id,
                    sender.user_type,
                    receiver.user_id,
                    receiver.user_type,
                )
        finally:
            await conn.close()
        [event] = await client.events_through(start + 1, timeout=5)  # the poll is 60 s away
        assert (event["data"]["id"], event["data"]["body"]) == (message_id, "from psql")
    assert {"doorbell": True} in notifications, "the trigger did not ring"


def test_doorbell_setting_is_validated() -> None:
    assert Settings.from_env({}).doorbell == "coalesced"
    assert Settings.from_env({"VECHAT_DOORBELL": "transaction"}).doorbell == "transaction"
    with pytest.raises(ConfigError, match="VECHAT_DOORBELL must be one of"):
        Settings.from_env({"VECHAT_DOORBELL": "per-message"})
    with pytest.raises(ConfigError, match="VECHAT_DOORBELL_BATCH_MS"):
        Settings.from_env({"VECHAT_DOORBELL_BATCH_MS": "-1"})
