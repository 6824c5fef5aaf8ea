"""An injected statement inside a real request reaches one tenant at most.

A hook runs arbitrary SQL in the very transaction of a real `GET /me` of organisation A — as a
SQL injection would, with everything the application role may do — and tries every way to read,
count, write or learn of organisation B's rows: settings, `read_events`, `SET ROLE`, functions,
views, sequences, COPY, the signed contexts of other connections. None gets anywhere; the
request itself still answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.api import Caller, api_client
from tests.support.fixtures import Database
from vechat_rls import db
from vechat_rls.chat import me as chat_me
from vechat_rls.db import context
from vechat_rls.identity import Identity

SECRET_OF_B = "organisation-b-only-7351"


@pytest.fixture
def orgs(migrated_database: Database) -> Iterator[tuple[int, int]]:
    a, b = h.new_organisation_ids(2)
    with psycopg.connect(migrated_database.admin_url) as conn:
        h.seed_organisation(conn, a)
        seed_b = h.seed_organisation(conn, b)
        h.act_as(conn, b, h.P1)
        h.insert_message(conn, b, seed_b.conversation_id, h.P1, h.C1, SECRET_OF_B)
        conn.commit()
    yield a, b
    h.purge_organisations(migrated_database.admin_url, [a, b])


def rows_of(admin_url: str, organisation_id: int) -> dict[str, str]:
    """A checksum of every tenant table's rows of one organisation, as the superuser."""
    with psycopg.connect(admin_url) as conn:
        tables = [r[0] for r in conn.execute(h.TENANT_TABLES_SQL).fetchall()]
        return {
            t: str(
                conn.execute(
                    "SELECT count(*) || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text),"
                    f" '')) FROM public.{t} x WHERE organisation_id = %s",
                    (organisation_id,),
                ).fetchone()
            )
            for t in tables
        }


async def attack(conn: db.Transaction, b: int, tables: list[str]) -> dict[str, Any]:
    """Everything the injected code tries; each attempt in a savepoint. What it got, by name."""
    raw = conn.connection
    got: dict[str, Any] = {}

    async def attempt(name: str, sql: str, *args: Any) -> None:
        # In a savepoint: a failure leaves the request's transaction as it was.
        await raw.execute("SAVEPOINT injected")
        try:
            got[name] = [tuple(r) for r in await raw.fetch(sql, *args)]
            await raw.execute("RELEASE SAVEPOINT injected")
        except Exception as exc:  # what an attacker would see
            await raw.execute("ROLLBACK TO SAVEPOINT injected")
            got[name] = f"error: {type(exc).__name__}: {exc}"

    # Settings: the policies trusted them once.
    set_b = (
        "SELECT set_config('vechat.organisation_id', $1, true), "
        "set_config('vechat.user_id', '11', true), "
        "set_config('vechat.user_type', 'personnel', true)"
    )
    for table in tables:
        await attempt(
            f"settings {table}",
            f"WITH s AS ({set_b}) SELECT count(*) FROM s, public.{table} "
            "WHERE organisation_id = $2",
            str(b),
            b,
        )
        await attempt(f"settings delete {table}",
                      f"WITH s AS ({set_b}) DELETE FROM public.{table} t USING s "
                      "WHERE t.organisation_id = $2 RETURNING 1", str(b), b)
    await attempt("settings insert", f"WITH s AS ({set_b}) INSERT INTO public.vechat_contacts "
                  "(organisation_id, user_id, user_type) SELECT $2, 99, 'client' FROM s "
                  "RETURNING 1", str(b), b)
    await attempt("settings text", "SELECT organisation_id, message FROM public.vechat_messages")
    # read_events for B's users: without a token, forged, and with a token A's request may sign.
    for name, token in (
        ("none", None),
        ("forged", f"v1|test|{b}|11|personnel||1|1|1|99999999999|" + "0" * 64),
    ):
        await attempt(f"read_events {name}", "SELECT seq FROM vechat.read_events($1::jsonb)",
                      [[b, "personnel", 11, 0, token]])
    # Roles the app might switch to.
    for role in ("vechat_owner", "vechat_auditor", "postgres", "pg_read_all_data"):
        await attempt(f"set role {role}", f"SET LOCAL ROLE {role}")
    await attempt("session authorization", "SET SESSION AUTHORIZATION postgres")
    # Functions that act, sign or count.
    await attempt("act_as", "SELECT vechat.act_as($1, 11, 'personnel')", b)
    await attempt("context_mac", "SELECT vechat.context_mac('test', 'v1|x')")
    await attempt("doorbell", "SELECT vechat.doorbell('vechat_events')")
    await attempt("add key", "SELECT vechat.add_context_key('mine', $1)", b"k" * 32)
    await attempt("emit", "SELECT vechat.emit($1, 11, 'personnel', 'message.created', 1, 1)", b)
    await attempt("recount", "SELECT vechat.recount_unread($1)", b)
    await attempt("prune_events", "SELECT vechat.prune_events(60)")
    await attempt("findings", "SELECT * FROM vechat_audit.findings()")
    # Tables and views that are not tenant tables.
    await attempt("keys", "SELECT * FROM vechat.context_keys")
    await attempt("id counters", "SELECT * FROM vechat.id_sequences")
    await attempt("id sequence", "SELECT vechat.id_sequence($1, 'message')", b)
    await attempt("contexts", "SELECT organisation_id FROM vechat.session_contexts")
    await attempt("context view", "SELECT organisation_id FROM vechat.context")
    await attempt("presence view", "SELECT * FROM vechat.presence_view")
    # Sequences: none left behind the ids users see; the others are not the app's to read.
    await attempt("sequences", "SELECT c.oid::regclass::text FROM pg_class c "
                  "JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'S' AND n.nspname IN ('public', 'vechat')")
    sequences = got["sequences"] if isinstance(got["sequences"], list) else []
    for (sequence,) in sequences:
        await attempt(f"last_value {sequence}", f"SELECT last_value FROM {sequence}")
        await attempt(f"pg_sequence_last_value {sequence}",
                      "SELECT pg_sequence_last_value($1::regclass)", sequence)
    # COPY: out to a file, and of a query (row-level security applies to it).
    await attempt("copy to file", "COPY public.vechat_messages TO '/tmp/vechat-stolen'")
    out: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        out.append(chunk)

    await raw.copy_from_query(
        "SELECT message FROM public.vechat_messages WHERE organisation_id = $1", b, output=keep
    )
    got["copy query"] = b"".join(out).decode()
    # The contexts of other connections: a B request is in flight on another connection; its
    # token shows in pg_stat_activity. Entered here, it is refused (signed for that backend).
    await attempt("activity", "SELECT query FROM pg_stat_activity WHERE query LIKE '%vechat.enter%'"
                  " AND pid <> pg_backend_pid()")
    stolen = [
        m[1] for (q,) in (got["activity"] if isinstance(got["activity"], list) else [])
        if (m := re.search(r"vechat\.enter\('([^']+)'\)", q))
    ]
    got["stolen tokens"] = len(stolen)
    for n, token in enumerate(stolen):
        await attempt(f"enter stolen {n}", "SELECT vechat.enter($1)", token)
    return got


async def test_injection_in_a_request_of_a_cannot_reach_b(
    migrated_database: Database, orgs: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = orgs
    with psycopg.connect(migrated_database.admin_url) as conn:
        tables = [r[0] for r in conn.execute(h.TENANT_TABLES_SQL).fetchall()]
    before = rows_of(migrated_database.admin_url, b)
    got: dict[str, Any] = {}
    original = chat_me.me

    async def injected(conn: db.Transaction, identity: Identity) -> Any:
        got.update(await attack(conn, b, tables))
        return await original(conn, identity)

    monkeypatch.setattr(chat_me, "me", injected)
    # A request of B in flight on another connection, its context entered and its token in
    # pg_stat_activity, while A's request runs.
    b_conn = await db.create_pool(migrated_database.app_url, min_size=0, max_size=1)
    caller = Caller(a, h.P1.user_id, h.P1.user_type)
    try:
        async with db.tenant(b_conn, Identity(organisation_id=b, user_id=11,
                                              user_type="personnel")) as in_flight:
            async with api_client(migrated_database) as client:
                response = await client.get("/api/v1/me", headers=caller.headers)
            # B's own transaction still acts for B: the injection took nothing from it.
            assert await in_flight.fetchval(
                "SELECT count(*) FROM vechat_messages WHERE message = $1", SECRET_OF_B
            ) == 1
    finally:
        await b_conn.close()
    assert response.status_code == 200 and response.json()["organisation_id"] == a

    # Nothing of B was read, counted or written.
    for table in tables:
        assert got[f"settings {table}"] == [(0,)], (table, got[f"settings {table}"])
        assert got[f"settings delete {table}"] in ([], ) or "error" in str(
            got[f"settings delete {table}"]
        ), table
    assert "row-level security" in got["settings insert"]
    # The request still acts for A alone: the settings changed nothing of its context.
    assert got["settings text"] and {row[0] for row in got["settings text"]} == {a}
    assert rows_of(migrated_database.admin_url, b) == before
    for name in ("read_events none", "read_events forged"):
        assert "InvalidAuthorizationSpecification" in got[name], got[name]
    for role in ("vechat_owner", "vechat_auditor", "postgres", "pg_read_all_data"):
        assert "permission denied" in got[f"set role {role}"], got[f"set role {role}"]
    assert "permission denied" in got["session authorization"]
    for name in ("act_as", "context_mac", "doorbell", "add key", "emit", "prune_events",
                 "findings", "keys", "id counters", "id sequence"):
        assert "permission denied" in got[name], (name, got[name])
    assert got["recount"] == [(0,)]  # under row-level security: nothing of B to recount
    assert got["contexts"] == [(a,)] and got["context view"] == [(a,)]
    assert all(row[0] != b for row in got["presence view"])
    assert not [s for (s,) in got["sequences"] if re.search(
        r"vechat_(messages|conversations|attachments|message_edits)_id_seq", s)]
    for name, value in got.items():
        if name.startswith(("last_value", "pg_sequence_last_value")):
            assert value == [(None,)] or "permission denied" in value, (name, value)
    assert "error" in got["copy to file"]
    assert got["copy query"] == ""
    assert got["stolen tokens"] >= 1  # B's token was there to steal ...
    for n in range(got["stolen tokens"]):  # ... and acts for nobody here
        assert "signed for another connection" in got[f"enter stolen {n}"]
    assert SECRET_OF_B not in json.dumps(got, default=str)


def test_a_token_is_bound_to_its_backend_its_expiry_and_its_key() -> None:
    identity = Identity(organisation_id=1, user_id=2, user_type="client", role="a.b:c")
    token = context.sign(identity, 42, 1_700_000_000_000_000, counter=7)
    fields = token.split("|")
    assert fields[:9] == ["v1", "test", "1", "2", "client", "a.b:c", "42", "1700000000000000", "7"]
    assert len(fields[10]) == 64
