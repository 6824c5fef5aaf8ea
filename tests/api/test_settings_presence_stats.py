"""`/api/v1/settings`, `/api/v1/presence`, `/api/v1/stats` through HTTP on the real schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.api import Caller, api_client, assert_problem, table_checksums
from tests.support.fixtures import Database
from tests.support.seed import (
    create_conversation,
    insert_message,
    new_organisation_ids,
    purge_organisations,
)

ORG_A, ORG_B = new_organisation_ids(2)
ANNA = Caller(ORG_A, 1, "personnel")
BEN = Caller(ORG_A, 2, "client")
CORA = Caller(ORG_A, 3, "personnel")
ANNA_IN_B = Caller(ORG_B, 1, "personnel")  # same id and type, other organisation

DEFAULTS = {
    "email_notifications": True,
    "push_notifications": True,
    "sound_notifications": True,
    "theme": "light",
    "font_size": "medium",
    "show_online_status": True,
    "show_read_receipts": True,
    "custom_settings": {},
}


@pytest.fixture(scope="module")
def organisations(migrated_database: Database) -> Iterator[None]:
    yield
    purge_organisations(migrated_database.admin_url, [ORG_A, ORG_B])


@pytest.fixture(scope="module")
async def client(
    migrated_database: Database, organisations: None
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(migrated_database) as c:
        yield c


def admin_sql(database: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.admin_url) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


# --- settings ----------------------------------------------------------------------------------


async def test_settings_default_until_changed_and_get_writes_nothing(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    caller = Caller(ORG_A, 50, "client")
    response = await client.get("/api/v1/settings", headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.json() == DEFAULTS
    rows = admin_sql(
        migrated_database,
        "SELECT 1 FROM vechat_user_settings WHERE organisation_id = %s AND user_id = 50",
        ORG_A,
    )
    assert rows == []


async def test_patch_settings_changes_only_the_given_fields(client: AsyncTestClient[Any]) -> None:
    caller = Caller(ORG_A, 51, "personnel")
    first = await client.patch("/api/v1/settings", json={"theme": "dark"}, headers=caller.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {**DEFAULTS, "theme": "dark"}
    second = await client.patch(
        "/api/v1/settings",
        json={"font_size": "large", "push_notifications": False, "custom_settings": {"a": [1]}},
        headers=caller.headers,
    )
    expected = {
        **DEFAULTS,
        "theme": "dark",
        "font_size": "large",
        "push_notifications": False,
        "custom_settings": {"a": [1]},
    }
    assert second.json() == expected
    assert (await client.get("/api/v1/settings", headers=caller.headers)).json() == expected
    # custom_settings is replaced as a whole; an empty PATCH changes nothing
    third = await client.patch(
        "/api/v1/settings", json={"custom_settings": {"b": True}}, headers=caller.headers
    )
    assert third.json()["custom_settings"] == {"b": True}
    assert (await client.patch("/api/v1/settings", json={}, headers=caller.headers)).json() == {
        **expected,
        "custom_settings": {"b": True},
    }


async def test_settings_belong_to_one_user_of_one_organisation(
    client: AsyncTestClient[Any],
) -> None:
    mine = Caller(ORG_A, 52, "personnel")
    await client.patch("/api/v1/settings", json={"theme": "auto"}, headers=mine.headers)
    for other in (
        Caller(ORG_B, 52, "personnel"),  # same id, other organisation
        Caller(ORG_A, 52, "client"),  # same id, other type
        Caller(ORG_A, 53, "personnel"),
    ):
        response = await client.get("/api/v1/settings", headers=other.headers)
        assert response.json() == DEFAULTS, other


@pytest.mark.parametrize(
    "body",
    [
        {"organisation_id": ORG_B},
        {"org": ORG_B, "theme": "dark"},
        {"user_id": 2},
        {"unknown": True},
        {"theme": "blue"},
        {"theme": None},
        {"font_size": "huge"},
        {"email_notifications": "true"},
        {"show_online_status": 1},
        {"custom_settings": []},
        {"custom_settings": "x"},
        {"custom_settings": {"big": "x" * 16_400}},
        {"custom_settings": {"nul": "\u0000"}},
        [],
    ],
    ids=[
        "organisation_id",
        "org",
        "user_id",
        "unknown",
        "bad-theme",
        "null-theme",
        "bad-font-size",
        "string-bool",
        "int-bool",
        "custom-array",
        "custom-string",
        "custom-over-16k",
        "custom-nul",
        "not-an-object",
    ],
)
async def test_bad_settings_patches_are_400_and_change_nothing(
    client: AsyncTestClient[Any], migrated_database: Database, body: Any
) -> None:
    before = table_checksums(migrated_database.admin_url)
    response = await client.patch("/api/v1/settings", json=body, headers=ANNA.headers)
    assert_problem(response, 400)
    assert table_checksums(migrated_database.admin_url) == before


async def test_custom_settings_near_the_limit_are_kept(client: AsyncTestClient[Any]) -> None:
    caller = Caller(ORG_A, 54, "client")
    custom = {"notes": "é" * 4000, "n": list(range(100))}
    response = await client.patch(
        "/api/v1/settings", json={"custom_settings": custom}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["custom_settings"] == custom


def _nested(levels: int) -> bytes:
    """A settings patch whose `custom_settings` nests objects `levels` deep."""
    return b'{"custom_settings": ' + b'{"a": ' * (levels - 1) + b"{}" + b"}" * levels


@pytest.mark.parametrize("levels", [33, 973, 5_000, 100_000])
async def test_deeply_nested_custom_settings_are_400_not_500(
    client: AsyncTestClient[Any], migrated_database: Database, levels: int
) -> None:
    """Past some hundreds of levels the decoder runs out of stack (RecursionError); past 32 the
    settings would be stored and then be too deep to read back: both are the client's fault."""
    before = table_checksums(migrated_database.admin_url)
    response = await client.patch(
        "/api/v1/settings",
        content=_nested(levels),
        headers={**ANNA.headers, "content-type": "application/json"},
    )
    body = assert_problem(response, 400)
    assert body["type"] == "urn:vechat:problem:validation-error"
    assert "nest" in body["detail"], body
    assert table_checksums(migrated_database.admin_url) == before


async def test_custom_settings_nested_32_levels_are_kept(client: AsyncTestClient[Any]) -> None:
    caller = Caller(ORG_A, 55, "client")
    response = await client.patch(
        "/api/v1/settings",
        content=_nested(32),
        headers={**caller.headers, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    read = await client.get("/api/v1/settings", headers=caller.headers)
    assert read.status_code == 200 and read.json() == response.json()


async def test_custom_settings_over_16k_as_stored_get_the_size_message(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    """15,001 bytes of compact JSON are more than 16 KiB as PostgreSQL stores and measures them
    (`custom_settings::text` puts a space after every `:` and `,`): the size message, not
    "a value is invalid or out of range"."""
    custom: dict[str, Any] = {f"k{n:04}": 0 for n in range(1400)}
    compact = json.dumps(custom, separators=(",", ":"))
    custom["pad"] = "x" * (15_001 - len(compact) - len(',"pad":""'))
    assert len(json.dumps(custom, separators=(",", ":"))) == 15_001
    assert len(json.dumps(custom)) > 16_384  # the database's spacing
    before = table_checksums(migrated_database.admin_url)
    response = await client.patch(
        "/api/v1/settings", json={"custom_settings": custom}, headers=ANNA.headers
    )
    body = assert_problem(response, 400)
    assert body["detail"].startswith("custom_settings is larger than 16384 bytes as stored"), body
    assert body["errors"] == [{"path": "custom_settings", "source": "body", "message": "too large"}]
    assert table_checksums(migrated_database.admin_url) == before


async def test_every_kind_of_invalid_input_has_the_one_validation_problem_type(
    client: AsyncTestClient[Any],
) -> None:
    """Whichever layer refuses — the JSON decoder, msgspec's types, Litestar's query parameters,
    the domain, a CHECK in the database — a 400 has one `type`; so has a 413."""
    json_headers = {**ANNA.headers, "content-type": "application/json"}
    refused = [
        await client.patch("/api/v1/settings", content=b'{"theme": ', headers=json_headers),
        await client.patch("/api/v1/settings", json={"bogus": 1}, headers=ANNA.headers),
        await client.patch("/api/v1/settings", json={"theme": 5}, headers=ANNA.headers),
        await client.patch(
            "/api/v1/settings",
            json={"custom_settings": {"big": "x" * 16_400}},
            headers=ANNA.headers,
        ),
        await client.get("/api/v1/conversations", params={"limit": "x"}, headers=ANNA.headers),
        await client.get("/api/v1/presence", params={"users": "robot:1"}, headers=ANNA.headers),
    ]
    types = {assert_problem(response, 400)["type"] for response in refused}
    assert types == {"urn:vechat:problem:validation-error"}
    too_large = await client.patch(
        "/api/v1/settings", content=b" " * (2 * 1024 * 1024), headers=json_headers
    )
    assert assert_problem(too_large, 413)["type"] == "urn:vechat:problem:payload-too-large"


# --- presence ----------------------------------------------------------------------------------


async def presence(client: AsyncTestClient[Any], viewer: Caller, *users: Caller) -> list[Any]:
    query = ",".join(f"{u.user_type}:{u.user_id}" for u in users)
    response = await client.get("/api/v1/presence", params={"users": query}, headers=viewer.headers)
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()
    return result


async def test_put_presence_is_seen_by_the_organisation(client: AsyncTestClient[Any]) -> None:
    response = await client.put("/api/v1/presence", json={"status": "busy"}, headers=ANNA.headers)
    assert response.status_code == 200, response.text
    mine = response.json()
    assert (mine["user_id"], mine["user_type"], mine["status"]) == (1, "personnel", "busy")
    assert mine["last_seen"]
    seen = await presence(client, BEN, ANNA, CORA)
    assert seen[0] == {**mine}
    assert seen[1] == {
        "user_id": 3,
        "user_type": "personnel",
        "status": "offline",
        "last_seen": None,
    }


async def test_users_of_another_organisation_look_like_unknown_users(
    client: AsyncTestClient[Any],
) -> None:
    await client.put("/api/v1/presence", json={"status": "online"}, headers=ANNA.headers)
    unknown = Caller(ORG_A, 999_999, "client")
    seen = await presence(client, ANNA_IN_B, ANNA, unknown)
    assert seen == [
        {"user_id": 1, "user_type": "personnel", "status": "offline", "last_seen": None},
        {"user_id": 999_999, "user_type": "client", "status": "offline", "last_seen": None},
    ]


async def test_hidden_online_status_shows_offline_without_last_seen(
    client: AsyncTestClient[Any],
) -> None:
    shy = Caller(ORG_A, 60, "client")
    await client.put("/api/v1/presence", json={"status": "online"}, headers=shy.headers)
    assert (await presence(client, ANNA, shy))[0]["status"] == "online"
    await client.patch("/api/v1/settings", json={"show_online_status": False}, headers=shy.headers)
    await client.put("/api/v1/presence", json={"status": "online"}, headers=shy.headers)
    assert await presence(client, ANNA, shy) == [
        {"user_id": 60, "user_type": "client", "status": "offline", "last_seen": None}
    ]
    await client.patch("/api/v1/settings", json={"show_online_status": True}, headers=shy.headers)
    again = await presence(client, ANNA, shy)
    assert again[0]["status"] == "online" and again[0]["last_seen"]


async def test_hidden_online_status_set_before_any_presence(client: AsyncTestClient[Any]) -> None:
    shy = Caller(ORG_A, 61, "personnel")
    await client.patch("/api/v1/settings", json={"show_online_status": False}, headers=shy.headers)
    await client.put("/api/v1/presence", json={"status": "away"}, headers=shy.headers)
    assert (await presence(client, BEN, shy))[0] == {
        "user_id": 61,
        "user_type": "personnel",
        "status": "offline",
        "last_seen": None,
    }


async def test_http_presence_expires_after_60_seconds(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    idle = Caller(ORG_A, 62, "personnel")
    await client.put("/api/v1/presence", json={"status": "online"}, headers=idle.headers)
    rewind = (
        "UPDATE vechat_presence SET updated_at = now() - %s::interval "
        "WHERE organisation_id = %s AND user_type = 'personnel' AND user_id = 62"
    )
    admin_sql(migrated_database, rewind, "59 seconds", ORG_A)
    assert (await presence(client, ANNA, idle))[0]["status"] == "online"
    admin_sql(migrated_database, rewind, "61 seconds", ORG_A)
    expired = (await presence(client, ANNA, idle))[0]
    assert expired["status"] == "offline"
    assert expired["last_seen"]  # still known when they were last seen
    # a live WebSocket lease keeps the user online regardless of the HTTP heartbeat
    admin_sql(
        migrated_database,
        "INSERT INTO vechat_presence_connections "
        "(organisation_id, user_id, user_type, server_id, expires_at) "
        "VALUES (%s, 62, 'personnel', 'test', now() + interval '1 minute')",
        ORG_A,
    )
    assert (await presence(client, ANNA, idle))[0]["status"] == "online"


async def test_presence_answers_in_the_order_asked_without_duplicates(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get(
        "/api/v1/presence",
        params={"users": "client:2, personnel:1,client:2,personnel:3"},
        headers=CORA.headers,
    )
    assert [(p["user_type"], p["user_id"]) for p in response.json()] == [
        ("client", 2),
        ("personnel", 1),
        ("personnel", 3),
    ]


@pytest.mark.parametrize(
    "users",
    [
        "",
        "personnel",
        "personnel:",
        "personnel:0",
        "personnel:-1",
        "admin:5",
        "personnel:5,",
        "personnel:abc",
        "personnel:99999999999999999999",
        "personnel:9223372036854775808",
        ",".join(f"client:{n}" for n in range(1, 202)),
    ],
)
async def test_bad_users_parameter_is_400(client: AsyncTestClient[Any], users: str) -> None:
    response = await client.get("/api/v1/presence", params={"users": users}, headers=ANNA.headers)
    assert_problem(response, 400)


async def test_presence_of_200_users_is_accepted(client: AsyncTestClient[Any]) -> None:
    users = ",".join(f"client:{n}" for n in range(1, 201))
    response = await client.get("/api/v1/presence", params={"users": users}, headers=ANNA.headers)
    assert response.status_code == 200 and len(response.json()) == 200


async def test_presence_without_users_is_400(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.get("/api/v1/presence", headers=ANNA.headers), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "invisible"},
        {"status": None},
        {},
        {"status": "online", "organisation_id": ORG_B},
        {"status": "online", "user_id": 2},
        {"status": "online", "last_seen": "2020-01-01T00:00:00Z"},
    ],
)
async def test_bad_presence_updates_are_400_and_change_nothing(
    client: AsyncTestClient[Any], migrated_database: Database, body: dict[str, Any]
) -> None:
    before = table_checksums(migrated_database.admin_url)
    response = await client.put("/api/v1/presence", json=body, headers=BEN.headers)
    assert_problem(response, 400)
    assert table_checksums(migrated_database.admin_url) == before


# --- stats -------------------------------------------------------------------------------------


async def test_stats_count_the_callers_messages_and_conversations(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    sender, receiver, other = Caller(ORG_A, 70, "personnel"), Caller(ORG_A, 71, "client"), CORA
    zero = {"sent_messages": 0, "received_messages": 0, "conversations": 0}
    assert (await client.get("/api/v1/stats", headers=sender.headers)).json() == zero
    with psycopg.connect(migrated_database.admin_url) as conn:
        first = create_conversation(conn, ORG_A, sender.user, receiver.user)
        second = create_conversation(conn, ORG_A, sender.user, other.user)
        for _ in range(3):
            insert_message(conn, ORG_A, first, sender.user, receiver.user, "hi")
        insert_message(conn, ORG_A, first, receiver.user, sender.user, "hello")
        insert_message(conn, ORG_A, second, other.user, sender.user, "yo")
    stats = (await client.get("/api/v1/stats", headers=sender.headers)).json()
    assert stats == {"sent_messages": 3, "received_messages": 2, "conversations": 2}
    assert (await client.get("/api/v1/stats", headers=receiver.headers)).json() == {
        "sent_messages": 1,
        "received_messages": 3,
        "conversations": 1,
    }
    # the same ids in another organisation have nothing
    for twin in (Caller(ORG_B, 70, "personnel"), Caller(ORG_B, 71, "client")):
        assert (await client.get("/api/v1/stats", headers=twin.headers)).json() == zero


async def test_my_endpoints_need_a_token(client: AsyncTestClient[Any]) -> None:
    for method, path in (
        ("GET", "/api/v1/settings"),
        ("PATCH", "/api/v1/settings"),
        ("PUT", "/api/v1/presence"),
        ("GET", "/api/v1/presence?users=client:1"),
        ("GET", "/api/v1/stats"),
    ):
        assert_problem(await client.request(method, path, json={}), 401)
