"""`/api/v1/contacts`: visibility, accent-insensitive search, keyset pages, admin bulk upsert."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.api import Caller, api_client, assert_problem, table_checksums
from tests.support.fixtures import Database
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls import db
from vechat_rls.chat.contacts import visible_contact
from vechat_rls.identity import Identity

ORG_A, ORG_B = new_organisation_ids(2)
ADMIN = Caller(ORG_A, 900, "personnel", role="admin")
ADMIN_B = Caller(ORG_B, 900, "personnel", role="admin")

CHLOE = Caller(ORG_A, 101, "personnel")  # commercial
BORIS = Caller(ORG_A, 102, "personnel")  # support
CARL = Caller(ORG_A, 103, "personnel")  # commercial, inactive
DINA = Caller(ORG_A, 104, "personnel")  # commercial; a name with LIKE wildcards
ASSIGNED = Caller(ORG_A, 201, "client")  # assigned to Boris
FREE = Caller(ORG_A, 202, "client")  # nobody assigned: sees the commercial staff
STRANDED = Caller(ORG_A, 203, "client")  # assigned only to inactive Carl
UNLISTED = Caller(ORG_A, 204, "client")  # no directory row at all
GONE = Caller(ORG_A, 205, "client", name="Gone")  # inactive client

DIRECTORY: list[dict[str, Any]] = [
    {
        "user_id": 101,
        "user_type": "personnel",
        "display_name": "Chloé Martin",
        "email": "chloe.martin@example.com",
        "role": "commercial",
    },
    {"user_id": 102, "user_type": "personnel", "display_name": "Boris Stone", "role": "support"},
    {
        "user_id": 103,
        "user_type": "personnel",
        "display_name": "Carl Ünal",
        "role": "commercial",
        "active": False,
    },
    {
        "user_id": 104,
        "user_type": "personnel",
        "display_name": "Dina 100%_off",
        "role": "commercial",
    },
    {
        "user_id": 201,
        "user_type": "client",
        "display_name": "Assigned Client",
        "assigned_personnel": [102],
    },
    {"user_id": 202, "user_type": "client", "display_name": "Free Client"},
    {
        "user_id": 203,
        "user_type": "client",
        "display_name": "Stranded Client",
        "assigned_personnel": [103],
    },
    {"user_id": 205, "user_type": "client", "display_name": "Gone Client", "active": False},
]

# Organisation B has people with the same ids: they must never show up in A (nor A's in B).
DIRECTORY_B: list[dict[str, Any]] = [
    {"user_id": 101, "user_type": "personnel", "display_name": "Chloé of B", "role": "commercial"},
    {"user_id": 301, "user_type": "client", "display_name": "Client of B"},
]


def keys(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [f"{c['user_type']}:{c['user_id']}" for c in response.json()["items"]]


@pytest.fixture(scope="module")
def organisations(migrated_database: Database) -> Iterator[None]:
    yield
    purge_organisations(migrated_database.admin_url, [ORG_A, ORG_B])


@pytest.fixture(scope="module")
async def client(
    migrated_database: Database, organisations: None
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(migrated_database) as c:
        for admin, directory in ((ADMIN, DIRECTORY), (ADMIN_B, DIRECTORY_B)):
            response = await c.put(
                "/api/v1/contacts", json={"items": directory}, headers=admin.headers
            )
            assert response.status_code == 200, response.text
        yield c


# --- visibility ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        # personnel: every active contact of the organisation except themselves
        (CHLOE, ["client:201", "personnel:102", "personnel:104", "client:202", "client:203"]),
        (BORIS, ["client:201", "personnel:101", "personnel:104", "client:202", "client:203"]),
        (ASSIGNED, ["personnel:102"]),  # only the assigned personnel
        (FREE, ["personnel:101", "personnel:104"]),  # none assigned: active commercials
        (UNLISTED, ["personnel:101", "personnel:104"]),  # no row yet: same as none assigned
        (STRANDED, []),  # assigned personnel inactive: nobody
    ],
    ids=[
        "personnel",
        "other-personnel",
        "client-assigned",
        "client-unassigned",
        "client-no-row",
        "client-assigned-inactive",
    ],
)
async def test_contacts_visible_to_each_kind_of_caller(
    client: AsyncTestClient[Any], caller: Caller, expected: list[str]
) -> None:
    response = await client.get("/api/v1/contacts", headers=caller.headers)
    # ordered by display name: Assigned, Boris, Chloé, Dina, Free, Stranded
    assert keys(response) == expected


async def test_contact_fields(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/contacts", params={"q": "chloe"}, headers=FREE.headers)
    assert response.json() == {
        "items": [
            {
                "user_id": 101,
                "user_type": "personnel",
                "display_name": "Chloé Martin",
                "email": "chloe.martin@example.com",
                "avatar_url": None,
                "role": "commercial",
                "active": True,
            }
        ],
        "next_cursor": None,
    }


async def test_other_organisation_sees_only_its_own_directory(
    client: AsyncTestClient[Any],
) -> None:
    same_ids_in_b = Caller(ORG_B, 102, "personnel")
    assert keys(await client.get("/api/v1/contacts", headers=same_ids_in_b.headers)) == [
        "personnel:101",
        "client:301",
    ]
    names = (await client.get("/api/v1/contacts", headers=same_ids_in_b.headers)).json()["items"]
    assert [c["display_name"] for c in names] == ["Chloé of B", "Client of B"]


async def test_inactive_contacts_are_hidden_even_from_personnel(
    client: AsyncTestClient[Any],
) -> None:
    listed = keys(await client.get("/api/v1/contacts", headers=CHLOE.headers))
    assert "personnel:103" not in listed
    assert "client:205" not in listed


async def test_visible_contact_helper_agrees_with_the_list(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    pool = await db.create_pool(migrated_database.app_url, max_size=1)
    everyone = [(c["user_id"], c["user_type"]) for c in DIRECTORY] + [(204, "client")]
    try:
        for caller in (CHLOE, ASSIGNED, FREE, UNLISTED, STRANDED):
            listed = set(keys(await client.get("/api/v1/contacts", headers=caller.headers)))
            identity = Identity(
                organisation_id=caller.organisation_id,
                user_id=caller.user_id,
                user_type=caller.user_type,  # type: ignore[arg-type]
            )
            async with db.tenant(pool, identity, readonly=True) as conn:
                for user_id, user_type in everyone:
                    found = await visible_contact(conn, user_id, user_type)
                    key = f"{user_type}:{user_id}"
                    assert (found is not None) == (key in listed), (str(caller), key)
                    if found is not None:
                        assert (found.user_id, found.user_type) == (user_id, user_type)
        # the same ids in organisation B are not visible from A
        identity_b = Identity(organisation_id=ORG_B, user_id=999, user_type="personnel")
        async with db.tenant(pool, identity_b, readonly=True) as conn:
            assert await visible_contact(conn, 102, "personnel") is None
            assert await visible_contact(conn, 101, "personnel") is not None
    finally:
        await pool.close()


# --- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["chloe", "CHLOE", "Chloé", "CHLOÉ", "  chlo ", "martin@exa"])
async def test_search_is_case_and_accent_insensitive_on_name_and_email(
    client: AsyncTestClient[Any], q: str
) -> None:
    response = await client.get("/api/v1/contacts", params={"q": q}, headers=BORIS.headers)
    assert keys(response) == ["personnel:101"]


async def test_search_finds_accented_names_from_plain_letters(
    client: AsyncTestClient[Any],
) -> None:
    # Carl Ünal is inactive; search never reveals a hidden contact either.
    assert (
        keys(await client.get("/api/v1/contacts", params={"q": "unal"}, headers=BORIS.headers))
        == []
    )
    await client.put(
        "/api/v1/contacts",
        json={"items": [{**DIRECTORY[2], "active": True}]},
        headers=ADMIN.headers,
    )
    try:
        found = await client.get("/api/v1/contacts", params={"q": "UNAL"}, headers=BORIS.headers)
        assert keys(found) == ["personnel:103"]
    finally:
        await client.put("/api/v1/contacts", json={"items": [DIRECTORY[2]]}, headers=ADMIN.headers)


@pytest.mark.parametrize("q", ["%", "_", "0%_", "100%"])
async def test_like_wildcards_in_q_match_themselves(client: AsyncTestClient[Any], q: str) -> None:
    response = await client.get("/api/v1/contacts", params={"q": q}, headers=BORIS.headers)
    assert keys(response) == ["personnel:104"]


async def test_search_respects_visibility(client: AsyncTestClient[Any]) -> None:
    # Boris matches "o" but is not visible to a client without assignment.
    response = await client.get("/api/v1/contacts", params={"q": "boris"}, headers=FREE.headers)
    assert keys(response) == []
    sql_like = "'; DELETE FROM vechat_contacts; --"
    assert (
        keys(await client.get("/api/v1/contacts", params={"q": sql_like}, headers=BORIS.headers))
        == []
    )


# --- pages -------------------------------------------------------------------------------------


async def test_keyset_pages_cover_the_list_once_even_with_concurrent_inserts(
    client: AsyncTestClient[Any],
) -> None:
    full = keys(await client.get("/api/v1/contacts", headers=CHLOE.headers))
    first = await client.get("/api/v1/contacts", params={"limit": 2}, headers=CHLOE.headers)
    seen = keys(first)
    cursor = first.json()["next_cursor"]
    assert len(seen) == 2 and cursor
    # A contact sorting before the cursor arrives between two pages: no duplicate, no gap.
    early = {"user_id": 150, "user_type": "personnel", "display_name": "Aaron Early"}
    await client.put("/api/v1/contacts", json={"items": [early]}, headers=ADMIN.headers)
    try:
        while cursor:
            page = await client.get(
                "/api/v1/contacts", params={"limit": 2, "cursor": cursor}, headers=CHLOE.headers
            )
            seen += keys(page)
            cursor = page.json()["next_cursor"]
        assert seen == full
    finally:
        await client.put(
            "/api/v1/contacts", json={"items": [{**early, "active": False}]}, headers=ADMIN.headers
        )


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"limit": "x"},
        {"cursor": "not-a-cursor"},
        {"cursor": "WyJhIiwiYWRtaW4iLDFd"},
        {"q": "x" * 201},
        {"q": "nul\x00byte"},
        {"limit": "1" * 5000},
        {"limit": "\uff11"},  # a fullwidth digit one
    ],
)
async def test_bad_list_parameters_are_400(
    client: AsyncTestClient[Any], params: dict[str, Any]
) -> None:
    assert_problem(await client.get("/api/v1/contacts", params=params, headers=CHLOE.headers), 400)


async def test_limit_200_is_accepted(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/contacts", params={"limit": 200}, headers=CHLOE.headers)
    assert response.status_code == 200


# --- admin upsert ------------------------------------------------------------------------------


async def test_put_contacts_by_non_admin_is_403_and_changes_nothing(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    before = table_checksums(migrated_database.admin_url)
    for caller in (CHLOE, FREE, Caller(ORG_A, 101, "personnel", role="commercial")):
        item = {"user_id": 777, "user_type": "personnel", "display_name": "Intruder"}
        response = await client.put(
            "/api/v1/contacts", json={"items": [item]}, headers=caller.headers
        )
        assert_problem(response, 403)
    assert table_checksums(migrated_database.admin_url) == before


async def test_put_contacts_creates_then_updates_and_reports_counts(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    [org] = new_organisation_ids()
    admin = Caller(org, 1, "personnel", role="admin")
    items = [
        {"user_id": 400 + n, "user_type": "client", "display_name": f"Bulk {n}"} for n in range(3)
    ]
    try:
        created = await client.put("/api/v1/contacts", json={"items": items}, headers=admin.headers)
        assert created.json() == {"upserted": 3, "created": 3, "updated": 0}
        items[0] = {
            **items[0],
            "display_name": "Renamed",
            "email": "r@example.com",
            "active": False,
        }
        again = await client.put("/api/v1/contacts", json={"items": items}, headers=admin.headers)
        assert again.json() == {"upserted": 3, "created": 0, "updated": 3}
        with psycopg.connect(migrated_database.admin_url) as conn:
            row = conn.execute(
                "SELECT display_name, email, active, search_text FROM vechat_contacts "
                "WHERE organisation_id = %s AND user_type = 'client' AND user_id = 400",
                (org,),
            ).fetchone()
        assert row == ("Renamed", "r@example.com", False, "renamed r@example.com")
    finally:
        purge_organisations(migrated_database.admin_url, [org])


async def test_put_contacts_of_1000_items_is_accepted_and_1001_refused(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    [org] = new_organisation_ids()
    admin = Caller(org, 1, "personnel", role="admin")
    items = [
        {
            "user_id": n,
            "user_type": "client",
            "display_name": f"Client {n}",
            "assigned_personnel": [1],
        }
        for n in range(1, 1002)
    ]
    try:
        refused = await client.put("/api/v1/contacts", json={"items": items}, headers=admin.headers)
        assert refused.status_code in (400, 413), refused.text
        assert_problem(refused, refused.status_code)
        accepted = await client.put(
            "/api/v1/contacts", json={"items": items[:1000]}, headers=admin.headers
        )
        assert accepted.json() == {"upserted": 1000, "created": 1000, "updated": 0}
        with psycopg.connect(migrated_database.admin_url) as conn:
            count = conn.execute(
                "SELECT count(*) FROM vechat_contacts WHERE organisation_id = %s", (org,)
            ).fetchone()
        assert count == (1000,)
    finally:
        purge_organisations(migrated_database.admin_url, [org])


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"user_id": 1, "user_type": "client"}], "organisation_id": ORG_B},
        {"items": [{"user_id": 1, "user_type": "client", "organisation_id": ORG_B}]},
        {"items": [{"user_id": 1, "user_type": "client", "org": ORG_B}]},
        {"items": [{"user_id": 1, "user_type": "client", "organisationId": ORG_B}]},
        {"items": [{"user_id": 1, "user_type": "admin"}]},
        {"items": [{"user_id": 0, "user_type": "client"}]},
        {"items": [{"user_id": "1", "user_type": "client"}]},
        {"items": [{"user_id": 2**63, "user_type": "client"}]},
        {"items": [{"user_id": 1, "user_type": "client", "display_name": "x" * 201}]},
        {"items": [{"user_id": 1, "user_type": "client", "assigned_personnel": [0]}]},
        {"items": [{"user_id": 1, "user_type": "client", "display_name": "nul\u0000"}]},
        {"items": [{"user_id": 1, "user_type": "client"}, {"user_id": 1, "user_type": "client"}]},
        {"items": {"user_id": 1}},
        {},
    ],
    ids=[
        "org-top-level",
        "organisation_id",
        "org",
        "organisationId",
        "bad-type",
        "zero-id",
        "string-id",
        "huge-id",
        "long-name",
        "bad-assignment",
        "nul-in-name",
        "duplicate",
        "not-a-list",
        "no-items",
    ],
)
async def test_put_contacts_bad_bodies_are_400_and_change_nothing(
    client: AsyncTestClient[Any], migrated_database: Database, body: dict[str, Any]
) -> None:
    before = table_checksums(migrated_database.admin_url)
    assert_problem(await client.put("/api/v1/contacts", json=body, headers=ADMIN.headers), 400)
    assert table_checksums(migrated_database.admin_url) == before


async def test_put_contacts_writes_only_the_callers_organisation(
    client: AsyncTestClient[Any], migrated_database: Database
) -> None:
    # Admin of B writes ids that exist in A: A's rows stay exactly as they were.
    with psycopg.connect(migrated_database.admin_url) as conn:
        a_before = conn.execute(
            "SELECT * FROM vechat_contacts WHERE organisation_id = %s ORDER BY 1, 2, 3", (ORG_A,)
        ).fetchall()
    item = {"user_id": 102, "user_type": "personnel", "display_name": "Taken over?"}
    response = await client.put("/api/v1/contacts", json={"items": [item]}, headers=ADMIN_B.headers)
    assert response.json()["created"] == 1
    with psycopg.connect(migrated_database.admin_url) as conn:
        a_after = conn.execute(
            "SELECT * FROM vechat_contacts WHERE organisation_id = %s ORDER BY 1, 2, 3", (ORG_A,)
        ).fetchall()
        b_row = conn.execute(
            "SELECT display_name FROM vechat_contacts "
            "WHERE organisation_id = %s AND user_type = 'personnel' AND user_id = 102",
            (ORG_B,),
        ).fetchone()
    assert a_after == a_before
    assert b_row == ("Taken over?",)
    await client.put(
        "/api/v1/contacts", json={"items": [{**item, "active": False}]}, headers=ADMIN_B.headers
    )


async def test_contacts_need_a_token(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.get("/api/v1/contacts"), 401)
    assert_problem(await client.put("/api/v1/contacts", json={"items": []}), 401)
