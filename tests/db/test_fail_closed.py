"""Fail closed: vechat_app without a tenant context reads nothing and writes nothing.

Logged in as vechat_app itself (not `SET ROLE`), with the context in each of the states a pooled
connection can be in when nobody set one: never set (NULL), reset to '' by hand, and what is left
after a committed tenant transaction (the settings are transaction-local, so: '').
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support import seed as h
from tests.support.fixtures import Database
from tests.support.postgres import TestPostgres
from tests.support.seed import P1, Seed
from vechat_rls.db import check_role_safety

pytestmark = pytest.mark.db

NO_CONTEXT_STATES = ("never_set", "set_to_empty", "after_a_tenant_transaction")


@dataclass
class World:
    postgres: TestPostgres
    database: str
    seeds: list[Seed]


@pytest.fixture(scope="module")
def world(migrated_database: Database, postgres: TestPostgres) -> Iterator[World]:
    database = migrated_database.name
    with h.organisations(postgres, database, 2) as ids:
        with h.admin_connect(postgres, database) as conn:
            seeds = [h.seed_organisation(conn, o) for o in ids]
            conn.commit()
        yield World(postgres, database, seeds)


@pytest.fixture(params=NO_CONTEXT_STATES)
def app(request: pytest.FixtureRequest, world: World) -> Iterator[psycopg.Connection[Any]]:
    """A vechat_app connection in an open transaction without a tenant."""
    with h.app_connect(world.postgres, world.database) as conn:
        if request.param == "set_to_empty":
            h.set_context(conn, h.context_settings(None, None, empty=True))
        elif request.param == "after_a_tenant_transaction":
            h.act_as(conn, world.seeds[0].organisation_id, P1)
            assert conn.execute("SELECT count(*) FROM vechat_messages").fetchone() == (3,)
            conn.commit()
        organisation = conn.execute("SELECT vechat.current_organisation_id()").fetchone()
        assert organisation == (None,)
        yield conn
        conn.rollback()


def scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("relation", [*h.TENANT_TABLES, "vechat.presence_view"])
def test_no_context_sees_no_rows(app: psycopg.Connection[Any], world: World, relation: str) -> None:
    assert scalar(app, f"SELECT count(*) FROM {relation}") == 0


@pytest.mark.parametrize("table", h.TENANT_TABLES)
def test_no_context_inserts_nothing(app: psycopg.Connection[Any], world: World, table: str) -> None:
    """The row is one its owner may insert (the isolation matrix proves it), but no one is here."""
    seed = world.seeds[0]
    params = {
        "a": seed.organisation_id,
        "conversation_id": seed.conversation_id,
        "message_id": seed.message_id,
    }
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(h.OWNER_ROW_SQL[table], params)


@pytest.mark.parametrize("table", h.TENANT_TABLES)
def test_no_context_updates_and_deletes_nothing(
    app: psycopg.Connection[Any], world: World, table: str
) -> None:
    granted = {
        command: scalar(app, "SELECT has_table_privilege(%s, %s)", table, command)
        for command in ("UPDATE", "DELETE")
    }
    for command, sql in (
        ("UPDATE", f"UPDATE {table} SET organisation_id = organisation_id"),
        ("DELETE", f"DELETE FROM {table}"),
    ):
        if granted[command]:
            with app.transaction():
                assert app.execute(sql).rowcount == 0, command
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), app.transaction():
                app.execute(sql)


def test_whole_seed_is_there_for_the_superuser(world: World) -> None:
    """The zero counts above are about the context, not about an empty database."""
    with h.admin_connect(world.postgres, world.database) as conn:
        for table in h.TENANT_TABLES:
            count = scalar(
                conn,
                f"SELECT count(*) FROM {table} WHERE organisation_id = ANY(%s)",
                [s.organisation_id for s in world.seeds],
            )
            assert count > 0, table


def test_app_role_is_not_superuser_and_cannot_bypass_rls(world: World) -> None:
    with h.app_connect(world.postgres, world.database) as app:
        row = app.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False)
        # Not a member of any role that is either.
        privileged = app.execute(
            """SELECT m.rolname FROM pg_roles m
               WHERE (m.rolsuper OR m.rolbypassrls) AND m.rolname <> current_user
                 AND pg_has_role(current_user, m.oid, 'MEMBER')"""
        ).fetchall()
        assert privileged == []


def test_app_role_owns_nothing_in_the_database(world: World) -> None:
    with h.app_connect(world.postgres, world.database) as app:
        owned = app.execute(
            """SELECT 'relation ' || c.oid::regclass FROM pg_class c
               WHERE pg_has_role(current_user, c.relowner, 'MEMBER')
               UNION ALL
               SELECT 'schema ' || n.nspname FROM pg_namespace n
               WHERE pg_has_role(current_user, n.nspowner, 'MEMBER')
               UNION ALL
               SELECT 'function ' || p.oid::regprocedure FROM pg_proc p
               WHERE pg_has_role(current_user, p.proowner, 'MEMBER')
               UNION ALL
               SELECT 'type ' || t.oid::regtype FROM pg_type t
               WHERE pg_has_role(current_user, t.typowner, 'MEMBER')"""
        ).fetchall()
        assert owned == []
        assert not scalar(app, "SELECT pg_has_role(current_user, 'vechat_owner', 'MEMBER')")


async def test_app_role_passes_the_servers_own_role_safety_check(world: World) -> None:
    problems = await check_role_safety(world.postgres.app_url(world.database))
    assert problems == []


def test_app_role_cannot_switch_row_level_security_off(world: World) -> None:
    with h.app_connect(world.postgres, world.database, autocommit=True) as app:
        # row_security = off does not bypass anything: a filtered query raises instead.
        app.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT count(*) FROM vechat_messages")
        app.execute("RESET row_security")
        for sql in (
            "ALTER TABLE vechat_messages NO FORCE ROW LEVEL SECURITY",
            "ALTER TABLE vechat_messages DISABLE ROW LEVEL SECURITY",
            "DROP POLICY vechat_messages_organisation_isolation ON vechat_messages",
            "SET ROLE vechat_owner",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(sql)
