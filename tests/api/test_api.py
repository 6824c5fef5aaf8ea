"""The HTTP foundation: problem+json errors, limits, the tenant transaction per request, ops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.testing import AsyncTestClient

from tests.support.fixtures import Database
from tests.support.scratch import Scratch
from vechat_rls import db
from vechat_rls.api.app import create_app
from vechat_rls.api.dependencies import ConnDep, DatabaseDep, IdentityDep, SettingsDep
from vechat_rls.auth import mint_token
from vechat_rls.chat import ratelimit
from vechat_rls.chat.errors import NotFound, RateLimited
from vechat_rls.config import Settings
from vechat_rls.identity import Identity
from vechat_rls.pgserver import free_port

SECRET = "api-test-secret-long-enough-for-hs256!"
ALICE = {"organisation_id": 1, "user_id": 10, "user_type": "personnel"}


def token(**claims: Any) -> dict[str, str]:
    values = {**ALICE, **claims}
    return {"Authorization": "Bearer " + mint_token(key=SECRET, **values)}


class Participant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: int
    user_type: str


class ItemCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: str
    peer: Participant | None = None


class Probe(Controller):
    """Routes that exercise the foundation the way resource controllers will."""

    path = "/probe"

    @get("/items")
    async def list_items(self, conn: ConnDep) -> list[str]:
        return [r["note"] for r in await conn.fetch("SELECT note FROM vechat_items ORDER BY 1")]

    @get("/read-only")
    async def read_only(self, conn: ConnDep) -> dict[str, str]:
        return {"read_only": await conn.fetchval("SHOW transaction_read_only")}

    @post("/items")
    async def create_item(
        self, conn: ConnDep, identity: IdentityDep, data: JSONBody[ItemCreate]
    ) -> dict[str, str]:
        await conn.execute(
            "INSERT INTO vechat_items VALUES ($1, $2, $3)",
            identity.organisation_id,
            identity.user_id,
            data.note,
        )
        if data.note.startswith("fail"):
            raise NotFound("conversation", 42)
        return {"note": data.note}

    @post("/foreign-item")
    async def foreign_item(self, conn: ConnDep) -> None:
        # organisation 2 while acting for organisation 1: the policy's check refuses it
        await conn.execute("INSERT INTO vechat_items VALUES (2, 10, 'smuggled')")

    @post("/raise/{sqlstate:str}")
    async def raise_sqlstate(self, conn: ConnDep, sqlstate: FromPath[str]) -> None:
        await conn.execute(
            f"DO $$BEGIN RAISE EXCEPTION 'Key (organisation_id, id)=(2, 7) secret' "
            f"USING ERRCODE = '{sqlstate}'; END$$"
        )

    @post("/slow")
    async def slow(self, conn: ConnDep) -> None:
        await conn.execute("SELECT pg_sleep(5)")

    @get("/boom")
    async def boom(self) -> None:
        raise RuntimeError("SELECT secret FROM internals")

    @post("/limited")
    async def limited(self) -> None:
        raise RateLimited(retry_after=17)

    @get("/limits")
    async def limits(self, settings: SettingsDep, database: DatabaseDep) -> dict[str, int]:
        return {"max_body_bytes": settings.max_body_bytes, "pool_max": database.settings.pool_max}


class Upload(Controller):
    path = "/upload"
    body_limit_setting = "max_upload_bytes"

    @post()
    async def upload(self, data: JSONBody[ItemCreate]) -> dict[str, int]:
        return {"length": len(data.note)}


def _settings(url: str, **kwargs: Any) -> Settings:
    return Settings(jwt_secret=SECRET, database_url=url, pool_min=0, pool_max=2, **kwargs)


@pytest.fixture(scope="module")
async def client(scratch: Scratch) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(
        _settings(
            scratch.app_url, statement_timeout_ms=200, max_body_bytes=4096, max_upload_bytes=20_000
        ),
        controllers=[Probe, Upload],
    )
    async with AsyncTestClient(app) as c:
        yield c


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:vechat:problem:")
    assert body["title"] and body["detail"]
    for leak in ("Traceback", "SELECT", "Key (", "secret", "vechat_items"):
        assert leak not in response.text
    return body


# --- the tenant transaction per request -----------------------------------------------------


async def test_get_runs_in_a_read_only_tenant_transaction(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/probe/read-only", headers=token())
    assert response.json() == {"read_only": "on"}
    items = await client.get("/api/v1/probe/items", headers=token())
    assert items.json() == ["one"]  # organisation 1's row only


async def test_post_commits_before_responding(client: AsyncTestClient[Any]) -> None:
    created = await client.post("/api/v1/probe/items", json={"note": "kept"}, headers=token())
    assert created.status_code == 201
    assert "kept" in (await client.get("/api/v1/probe/items", headers=token())).json()
    other_org = await client.get("/api/v1/probe/items", headers=token(organisation_id=2))
    assert "kept" not in other_org.json()


async def test_error_in_handler_rolls_back_and_is_404_problem(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/api/v1/probe/items", json={"note": "fail-1"}, headers=token())
    body = _assert_problem(response, 404)
    assert body["detail"] == "conversation 42 not found"
    assert "fail-1" not in (await client.get("/api/v1/probe/items", headers=token())).json()


async def test_write_refused_by_a_policy_is_404(client: AsyncTestClient[Any]) -> None:
    _assert_problem(await client.post("/api/v1/probe/foreign-item", headers=token()), 404)


async def test_statement_timeout_is_503_with_retry_after(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/api/v1/probe/slow", headers=token())
    _assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        ("23503", 404),  # foreign key: the referenced thing does not exist (for you)
        ("23505", 409),  # unique
        ("23514", 400),  # check
        ("22003", 400),  # numeric out of range
        ("42501", 403),  # privilege (not a policy)
        ("40001", 503),  # serialization failure
        ("53300", 503),  # too many connections
        ("XX000", 500),  # anything else
    ],
)
async def test_database_errors_map_to_statuses_without_leaking_sql(
    client: AsyncTestClient[Any], sqlstate: str, status: int
) -> None:
    response = await client.post(f"/api/v1/probe/raise/{sqlstate}", headers=token())
    _assert_problem(response, status)


async def test_rate_limited_is_429_with_retry_after(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/api/v1/probe/limited", headers=token())
    _assert_problem(response, 429)
    assert response.headers["retry-after"] == "17"


async def test_unhandled_exception_is_500_problem_without_details(
    client: AsyncTestClient[Any],
) -> None:
    body = _assert_problem(await client.get("/api/v1/probe/boom", headers=token()), 500)
    assert body["detail"] == "Internal Server Error"


async def test_handlers_can_ask_for_settings_and_database(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/api/v1/probe/limits", headers=token())
    assert response.json() == {"max_body_bytes": 4096, "pool_max": 2}


# --- bad input ------------------------------------------------------------------------------


async def test_malformed_json_is_400(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/api/v1/probe/items",
        content=b'{"note": ',
        headers={**token(), "Content-Type": "application/json"},
    )
    _assert_problem(response, 400)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"note": 5}, "note"),
        ({}, ""),
        ({"note": "x", "colour": "red"}, "colour"),
        ({"note": "x", "peer": {"user_id": "1", "user_type": "client"}}, "peer.user_id"),
        ({"note": "x", "peer": {"user_id": 1, "user_type": "client", "org": 2}}, "peer.org"),
    ],
    ids=["wrong-type", "missing-field", "unknown-field", "nested-wrong-type", "nested-unknown"],
)
async def test_validation_failure_is_400_with_field_paths(
    client: AsyncTestClient[Any], body: dict[str, Any], path: str
) -> None:
    response = await client.post("/api/v1/probe/items", json=body, headers=token())
    problem = _assert_problem(response, 400)
    assert problem["type"] == "urn:vechat:problem:validation-error"
    assert [e["path"] for e in problem["errors"]] == [path]
    assert problem["errors"][0]["source"] == "body" and problem["errors"][0]["message"]


async def test_body_over_the_limit_is_413(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/api/v1/probe/items", json={"note": "x" * 10_000}, headers=token()
    )
    _assert_problem(response, 413)


async def test_controller_may_take_the_upload_limit(client: AsyncTestClient[Any]) -> None:
    ok = await client.post("/api/v1/upload", json={"note": "x" * 10_000}, headers=token())
    assert ok.status_code == 201 and ok.json() == {"length": 10_000}
    too_big = await client.post("/api/v1/upload", json={"note": "x" * 30_000}, headers=token())
    _assert_problem(too_big, 413)


async def test_unknown_route_and_wrong_method_are_problems(client: AsyncTestClient[Any]) -> None:
    _assert_problem(await client.get("/nowhere"), 404)
    response = await client.delete("/healthz")
    _assert_problem(response, 405)


# --- operations -------------------------------------------------------------------------------


async def test_healthz_and_readyz_are_200_when_the_database_answers(
    client: AsyncTestClient[Any],
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "realtime": "ok"}


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Any]) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "vechat_requests_total" in response.text


async def test_openapi_31_document_with_bearer_security(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema")).json()
    assert schema["openapi"].startswith("3.1")
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    assert schema["paths"]["/api/v1/probe/items"]["get"]["security"] == [{"BearerToken": []}]
    responses = schema["paths"]["/api/v1/probe/items"]["post"]["responses"]
    assert {"201", "400", "401", "503"} <= set(responses)
    assert "application/problem+json" in responses["401"]["content"]
    page = await client.get("/schema/swagger")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    # Only the page served from our own files: the CDN-loading renderers are gone.
    for docs in ("/schema/elements", "/schema/scalar"):
        assert (await client.get(docs)).status_code == 404


async def test_database_down_is_503_with_retry_after_never_500() -> None:
    app = create_app(
        _settings(f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/none"), controllers=[Probe]
    )
    async with AsyncTestClient(app) as c:
        response = await c.get("/api/v1/probe/items", headers=token())
        _assert_problem(response, 503)
        assert int(response.headers["retry-after"]) >= 1
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        _assert_problem(ready, 503)
        assert ready.json()["checks"] == {"database": "unavailable", "realtime": "unavailable"}


# --- against the real schema ----------------------------------------------------------------


async def test_me_returns_the_token_identity_and_creates_the_contact_row(
    migrated_database: Database,
) -> None:
    me = {"organisation_id": 9101, "user_id": 5, "user_type": "client"}
    app = create_app(_settings(migrated_database.app_url))
    try:
        async with AsyncTestClient(app) as c:
            first = await c.get("/api/v1/me", headers=token(**me, role="admin", name="Zoë"))
            again = await c.get("/api/v1/me", headers=token(**me, name="Renamed"))
        assert first.status_code == 200, first.text
        assert first.json() == {
            **me,
            "role": "admin",
            "display_name": "Zoë",
            "email": None,
            "avatar_url": None,
        }
        assert again.json()["display_name"] == "Zoë"  # the directory row wins once it exists
        with psycopg.connect(migrated_database.admin_url) as conn:
            rows = conn.execute(
                "SELECT user_id, user_type, display_name, role FROM vechat_contacts "
                "WHERE organisation_id = 9101"
            ).fetchall()
        assert rows == [(5, "client", "Zoë", "admin")]
    finally:
        with psycopg.connect(migrated_database.admin_url) as conn:
            conn.execute("DELETE FROM vechat_contacts WHERE organisation_id = 9101")


RATE_LIMIT_DDL = """
CREATE TABLE public.vechat_rate_limits (
    organisation_id bigint NOT NULL, user_type varchar(20) NOT NULL, user_id bigint NOT NULL,
    action text NOT NULL, window_start timestamptz NOT NULL, hits integer NOT NULL,
    PRIMARY KEY (organisation_id, user_type, user_id, action));
ALTER TABLE public.vechat_rate_limits OWNER TO vechat_owner;
ALTER TABLE public.vechat_rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_rate_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY vechat_rate_limits_own ON public.vechat_rate_limits
    USING (organisation_id = (SELECT vechat.current_organisation_id())
           AND user_id = (SELECT vechat.current_user_id())
           AND user_type = (SELECT vechat.current_user_type()));
GRANT SELECT, INSERT, UPDATE ON public.vechat_rate_limits TO vechat_app;
"""


async def test_rate_limit_counts_across_pools_and_answers_429(fresh_database: Any) -> None:
    database = fresh_database(migrated=True)
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.vechat_rate_limits')").fetchone() == (None,):
            conn.execute(RATE_LIMIT_DDL.encode())
    alice = Identity(organisation_id=3, user_id=1, user_type="personnel")
    bob = Identity(organisation_id=3, user_id=2, user_type="personnel")
    # two pools stand for two server processes
    pools = [await db.create_pool(database.app_url, max_size=1) for _ in range(2)]
    try:
        for n in (1, 2):
            async with db.tenant(pools[n % 2], alice) as conn:
                assert await ratelimit.hit(conn, "message", limit=2) == n
        with pytest.raises(ratelimit.RateLimited) as caught:
            async with db.tenant(pools[0], alice) as conn:
                await ratelimit.hit(conn, "message", limit=2)
        assert 1 <= caught.value.retry_after <= 60
        async with db.tenant(pools[1], bob) as conn:  # another user has their own window
            assert await ratelimit.hit(conn, "message", limit=2) == 1
    finally:
        for pool in pools:
            await pool.close()


# --- the process ------------------------------------------------------------------------------


async def test_what_startup_made_is_left_out_of_garbage_collection_until_shutdown(
    scratch: Scratch,
) -> None:
    """api/lifespans.py's collector: a full collection under load walks only what came after
    startup (the started app's own objects are frozen), and shutdown gives them back."""
    import gc

    gc.unfreeze()
    app = create_app(_settings(scratch.app_url), controllers=[Probe])
    async with AsyncTestClient(app) as c:
        assert (await c.get("/healthz")).status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # modules, routes, schemas, pools
        assert not any(obj is app for obj in gc.get_objects(generation=2))  # frozen, not young
    assert gc.get_freeze_count() == 0
