"""The tenant transaction, the pool's release behaviour and the role-safety check (db.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.scratch import Scratch
from vechat_rls import db
from vechat_rls.identity import Identity
from vechat_rls.pgserver import free_port

ALICE = Identity(organisation_id=1, user_id=10, user_type="personnel", role="admin")
BOB = Identity(organisation_id=2, user_id=20, user_type="client")

READ_CONTEXT = """
SELECT (SELECT organisation_id FROM vechat.context) AS organisation_id,
       (SELECT user_id FROM vechat.context) AS user_id,
       (SELECT user_type FROM vechat.context) AS user_type,
       (SELECT role FROM vechat.context) AS role,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('transaction_read_only') AS read_only,
       current_setting('transaction_isolation') AS isolation,
       pg_backend_pid() AS pid
"""


@pytest.fixture
async def pool(scratch: Scratch) -> AsyncIterator[db.Pool]:
    """A pool of exactly one connection, so consecutive transactions share it."""
    p = await db.create_pool(scratch.app_url, min_size=0, max_size=1)
    yield p
    await p.close()


async def test_tenant_transaction_sets_exactly_the_settings(pool: db.Pool) -> None:
    async with db.tenant(pool, ALICE, statement_timeout_ms=1234) as conn:
        row = await conn.fetchrow(READ_CONTEXT)
    assert row is not None
    assert dict(row) | {"pid": 0} == {
        "organisation_id": 1,
        "user_id": 10,
        "user_type": "personnel",
        "role": "admin",
        "statement_timeout": "1234ms",
        "read_only": "off",
        "isolation": "read committed",
        "pid": 0,
    }


async def test_missing_role_is_no_role(pool: db.Pool) -> None:
    async with db.tenant(pool, BOB) as conn:
        assert await conn.fetchval("SELECT role IS NULL FROM vechat.context") is True


async def test_settings_are_gone_in_the_next_transaction_on_the_same_connection(
    pool: db.Pool,
) -> None:
    async with db.tenant(pool, ALICE, statement_timeout_ms=1234) as conn:
        first = await conn.fetchrow(READ_CONTEXT)
    async with pool.acquire() as conn:
        after = await conn.fetchrow(READ_CONTEXT)
    assert first is not None and after is not None
    assert after["pid"] == first["pid"]
    assert {after[k] for k in ("organisation_id", "user_id", "user_type", "role")} == {None}
    assert after["statement_timeout"] == "0"


async def test_policies_see_only_the_tenant_of_the_transaction(pool: db.Pool) -> None:
    async with db.tenant(pool, ALICE, readonly=True) as conn:
        alice_sees = await conn.fetch("SELECT organisation_id, note FROM vechat_items")
    async with db.tenant(pool, BOB, readonly=True) as conn:
        bob_sees = await conn.fetch("SELECT organisation_id, note FROM vechat_items")
    async with pool.acquire() as conn:
        nobody_sees = await conn.fetch("SELECT * FROM vechat_items")
    assert [tuple(r) for r in alice_sees] == [(1, "one")]
    assert [tuple(r) for r in bob_sees] == [(2, "two")]
    assert nobody_sees == []


async def test_readonly_transaction_rejects_writes(pool: db.Pool) -> None:
    with pytest.raises(db.PostgresError) as caught:
        async with db.tenant(pool, ALICE, readonly=True) as conn:
            await conn.execute("INSERT INTO vechat_items VALUES (1, 10, 'ro')")
    assert caught.value.sqlstate == "25006"  # read_only_sql_transaction
    async with db.tenant(pool, ALICE, readonly=True) as conn:
        assert await conn.fetchval("SELECT current_setting('transaction_read_only')") == "on"


async def test_exception_in_the_block_rolls_back(pool: db.Pool) -> None:
    with pytest.raises(RuntimeError):
        async with db.tenant(pool, ALICE) as conn:
            await conn.execute("INSERT INTO vechat_items VALUES (1, 10, 'rolled back')")
            raise RuntimeError("boom")
    async with db.tenant(pool, ALICE) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM vechat_items WHERE note = 'rolled back'") == 0
        )


async def test_successful_block_commits(pool: db.Pool) -> None:
    async with db.tenant(pool, ALICE) as conn:
        await conn.execute("INSERT INTO vechat_items VALUES (1, 10, 'committed')")
    async with db.tenant(pool, ALICE) as conn:
        assert await conn.fetchval("DELETE FROM vechat_items WHERE note = 'committed' RETURNING 1")


async def test_pool_release_sends_no_reset_query(pool: db.Pool) -> None:
    # A session-level SET would be undone by asyncpg's default `RESET ALL` on release; it
    # survives here, which shows that release costs no round trip. (The tenant context does not
    # need a reset: it is transaction-local, see the test above.)
    async with pool.acquire() as conn:
        await conn.execute("SET application_name = 'survives-release'")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") == "survives-release"
        await conn.execute("RESET application_name")


async def test_a_pooled_connection_knows_the_array_types_before_any_request(
    pool: db.Pool, scratch: Scratch
) -> None:
    """asyncpg learns an array type with an introspection query the first time a connection
    meets it; the pool's connections learn them when they open, so no request waits for it."""
    statement = "SELECT cardinality($1::bigint[]) + cardinality($2::text[])"

    async def queries_of_first_use(conn: asyncpg.Connection) -> list[str]:
        logged: list[str] = []
        conn.add_query_logger(lambda record: logged.append(record.query))
        assert await conn.fetchval(statement, [1, 2], ["a"]) == 3
        await asyncio.sleep(0.01)  # loggers are called soon after, not within the call
        return logged

    plain = await asyncpg.connect(scratch.app_url)  # the control: a connection of its own
    try:
        first = await queries_of_first_use(plain)
        assert statement in first and any("typeinfo" in query for query in first)
    finally:
        await plain.close()
    async with pool.acquire() as conn:
        assert await queries_of_first_use(conn) == [statement]


async def test_statement_timeout_cancels_a_slow_statement(pool: db.Pool) -> None:
    with pytest.raises(db.PostgresError) as caught:
        async with db.tenant(pool, ALICE, statement_timeout_ms=50) as conn:
            await conn.execute("SELECT pg_sleep(2)")
    assert caught.value.sqlstate == "57014"


def test_begin_sql_is_one_batch_entering_the_signed_context() -> None:
    sql = db.begin_sql(ALICE, readonly=True, statement_timeout_ms=500, token="v1|k|1|it's")
    assert sql == (
        "BEGIN ISOLATION LEVEL READ COMMITTED"
        "; SELECT vechat.enter('v1|k|1|it''s')"
        "; SET TRANSACTION READ ONLY"
        "; SET LOCAL statement_timeout = '500'"
    )


def test_begin_sql_without_a_token_renders_the_old_settings() -> None:
    sql = db.begin_sql(ALICE, readonly=True, statement_timeout_ms=500)
    assert sql == (
        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
        "; SET LOCAL vechat.organisation_id = '1'"
        "; SET LOCAL vechat.user_id = '10'"
        "; SET LOCAL vechat.user_type = 'personnel'"
        "; SET LOCAL vechat.role = 'admin'"
        "; SET LOCAL statement_timeout = '500'"
    )


@pytest.mark.parametrize("role", ["x'; DROP TABLE vechat_items; --", "a\\b", "a b"])
def test_begin_sql_refuses_a_role_that_is_not_an_identifier(role: str) -> None:
    identity = Identity(organisation_id=1, user_id=1, user_type="client", role=role)
    with pytest.raises(ValueError):
        db.begin_sql(identity, readonly=False, statement_timeout_ms=None)


async def test_unreachable_database_raises_database_unavailable() -> None:
    url = f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/nowhere"
    pool = await db.create_pool(url, min_size=0, max_size=1)
    try:
        with pytest.raises(db.DatabaseUnavailable):
            async with db.tenant(pool, ALICE):
                pass
    finally:
        await pool.close()


async def test_wrong_password_raises_database_unavailable(scratch: Scratch) -> None:
    url = scratch.pg.app_url(scratch.database, user=scratch.app_role, password="wrong")
    pool = await db.create_pool(url, min_size=0, max_size=1)
    try:
        with pytest.raises(db.DatabaseUnavailable):
            async with db.tenant(pool, ALICE):
                pass
    finally:
        await pool.close()


# --- role safety --------------------------------------------------------------------------


async def test_role_safety_accepts_the_rls_bound_role(scratch: Scratch) -> None:
    assert await db.check_role_safety(scratch.app_url) == []


async def test_role_safety_refuses_a_superuser(scratch: Scratch) -> None:
    with pytest.raises(db.RoleSafetyError, match="is a superuser"):
        await db.check_role_safety(scratch.admin_url)


async def test_role_safety_refuses_a_bypassrls_role(scratch: Scratch) -> None:
    role = scratch.new_login_role("BYPASSRLS")
    with pytest.raises(db.RoleSafetyError, match="has BYPASSRLS"):
        await db.check_role_safety(scratch.url_for(role))


async def test_role_safety_refuses_a_role_owning_a_vechat_table(scratch: Scratch) -> None:
    role = scratch.new_login_role()
    scratch.admin(
        f"CREATE TABLE public.vechat_owned (organisation_id bigint) ;"
        f"ALTER TABLE public.vechat_owned OWNER TO {role}"
    )
    try:
        with pytest.raises(db.RoleSafetyError, match=r"owns .*public\.vechat_owned"):
            await db.check_role_safety(scratch.url_for(role))
    finally:
        scratch.admin("DROP TABLE public.vechat_owned")


async def test_role_safety_refuses_a_member_of_the_owning_role(scratch: Scratch) -> None:
    role = scratch.new_login_role(f"IN ROLE {scratch.owner_role}")
    with pytest.raises(db.RoleSafetyError, match=r"public\.vechat_items"):
        await db.check_role_safety(scratch.url_for(role))


async def test_role_safety_refuses_a_role_owning_a_vechat_schema_object(scratch: Scratch) -> None:
    role = scratch.new_login_role()
    owner = scratch.admin_query("SELECT nspowner::regrole::text FROM pg_namespace "
                                "WHERE nspname = 'vechat'")
    scratch.admin(f"ALTER SCHEMA vechat OWNER TO {role}")
    try:
        with pytest.raises(db.RoleSafetyError, match="schema vechat"):
            await db.check_role_safety(scratch.url_for(role))
    finally:
        scratch.admin(f"ALTER SCHEMA vechat OWNER TO {owner}")


async def test_allow_privileged_downgrades_refusal_to_a_warning(
    scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vechat_rls.db"):
        problems = await db.check_role_safety(scratch.admin_url, allow_privileged=True)
    assert problems and "superuser" in problems[0]
    assert "tenant isolation is NOT enforced" in caplog.text


async def test_role_safety_on_unreachable_database_names_it_without_password() -> None:
    url = f"postgresql://vechat_app:secret-pw@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(db.DatabaseUnavailable) as caught:
        await db.check_role_safety(url)
    assert "127.0.0.1" in str(caught.value) and "secret-pw" not in str(caught.value)
