"""Registry mode: routing by organisation, lazy pools that close when idle, the connection cap,
a listener per database with sockets, and what serve checks before it starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.api import SECRET, assert_problem
from tests.support.fixtures import Database
from tests.support.fleet import backends, eventually, migrated_databases, write_registry
from tests.support.postgres import TestPostgres
from vechat_rls import cli, db
from vechat_rls.api.app import create_app
from vechat_rls.auth import mint_token
from vechat_rls.cli.serve import check_before_serving
from vechat_rls.config import ConfigError, Settings
from vechat_rls.fleet import Fleet
from vechat_rls.identity import Identity
from vechat_rls.pgserver import free_port
from vechat_rls.realtime.engines import Engines
from vechat_rls.realtime.pace import Pacer
from vechat_rls.realtime.ringer import Ringer
from vechat_rls.registry import load

ORG_A, ORG_B, ORG_C, ORG_D = 7101, 7102, 7103, 7104


@pytest.fixture(scope="module")
def databases(postgres: TestPostgres) -> Iterator[list[Database]]:
    made = migrated_databases(postgres, 5)
    yield made
    for database in made:
        postgres.drop_database(database.name)


@pytest.fixture
async def admin(postgres: TestPostgres) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    conn = await asyncpg.connect(postgres.admin_url())
    yield conn
    await conn.close()


def settings(registry: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "registry": str(registry),
        "pool_min": 0,
        "pool_max": 2,
        "pool_idle_s": 60,
        "realtime_poll_s": 60,
        **overrides,
    }
    return Settings(**values)


def identity(organisation_id: int, user_id: int = 11) -> Identity:
    return Identity(organisation_id=organisation_id, user_id=user_id, user_type="personnel")


def headers(organisation_id: int) -> dict[str, str]:
    token = mint_token(
        key=SECRET, organisation_id=organisation_id, user_id=11, user_type="personnel"
    )
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running(fleet: Fleet) -> AsyncIterator[Fleet]:
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


async def database_of(fleet: Fleet, organisation_id: int) -> str:
    async with fleet.lease(organisation_id) as database, database.tenant(
        identity(organisation_id), readonly=True
    ) as conn:
        name: str = await conn.fetchval("SELECT current_database()")
    return name


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.db
async def test_each_organisation_goes_to_its_database_and_the_others_to_the_shared_one(
    databases: list[Database], tmp_path: Path
) -> None:
    a, b, shared = databases[:3]
    registry = write_registry(
        tmp_path / "r.toml",
        [("a", a.app_url, [ORG_A]), ("b", b.app_url, [ORG_B]), ("shared", shared.app_url, ["*"])],
    )
    async with running(Fleet(load(registry), settings(registry))) as fleet:
        assert await database_of(fleet, ORG_A) == a.name
        assert await database_of(fleet, ORG_B) == b.name
        assert await database_of(fleet, ORG_C) == shared.name
        assert await database_of(fleet, ORG_D) == shared.name
        assert fleet.serves(999_999)


@pytest.mark.db
async def test_an_organisation_no_entry_places_is_not_served(
    databases: list[Database], tmp_path: Path
) -> None:
    a, b = databases[:2]
    registry = write_registry(
        tmp_path / "r.toml", [("a", a.app_url, [ORG_A]), ("b", b.app_url, [ORG_B, ORG_C])]
    )
    async with running(Fleet(load(registry), settings(registry))) as fleet:
        assert fleet.serves(ORG_C) and not fleet.serves(ORG_D)
        assert await database_of(fleet, ORG_C) == b.name
        with pytest.raises(LookupError):
            await database_of(fleet, ORG_D)


# --- pools ------------------------------------------------------------------------------------


@pytest.mark.db
async def test_a_pool_opens_on_first_use_and_closes_once_idle(
    databases: list[Database], tmp_path: Path, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    a, b = databases[:2]
    names = [a.name, b.name]
    registry = write_registry(
        tmp_path / "r.toml", [("a", a.app_url, [ORG_A]), ("b", b.app_url, [ORG_B])]
    )
    async with running(Fleet(load(registry), settings(registry, pool_idle_s=1))) as fleet:
        assert await backends(admin, names) == {}, "nothing opens before it is used"
        assert await database_of(fleet, ORG_A) == a.name
        assert fleet.slots["a"].database.is_open and not fleet.slots["b"].database.is_open
        assert await backends(admin, names) == {a.name: 1}
        # Held for longer than the idle time: in use is not idle.
        async with fleet.lease(ORG_A):
            await asyncio.sleep(1.6)
            assert fleet.slots["a"].database.is_open
        await eventually(lambda: not fleet.slots["a"].database.is_open, 5, "the idle pool closed")
        assert await backends(admin, names) == {}, "its connection is gone from the server too"
        assert await database_of(fleet, ORG_A) == a.name, "and it opens again on the next use"


@pytest.mark.db
async def test_a_pool_whose_role_could_bypass_rls_is_refused_when_it_opens(
    databases: list[Database], tmp_path: Path
) -> None:
    # A database that was down when serve started is checked when its pool first opens.
    registry = write_registry(
        tmp_path / "r.toml",
        [("ok", databases[0].app_url, [ORG_A]), ("unsafe", databases[1].admin_url, [ORG_B])],
    )
    async with running(Fleet(load(registry), settings(registry))) as fleet:
        with pytest.raises(db.DatabaseUnavailable):
            await database_of(fleet, ORG_B)
        unsafe = fleet.slots["unsafe"]
        assert not unsafe.database.is_open and unsafe.failed and "superuser" in unsafe.failed
        assert await database_of(fleet, ORG_A) == databases[0].name


@pytest.mark.db
async def test_the_connection_cap_holds_across_many_databases(
    databases: list[Database], tmp_path: Path, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    """5 databases, each with a pool of up to 2 and a ringer, one with a listener: never more
    than 3 connections at once, counted by PostgreSQL, and every transaction gets through."""
    cap, transactions, workers = 3, 60, 6
    organisations = [ORG_A + n for n in range(len(databases))]
    names = [d.name for d in databases]
    registry = write_registry(
        tmp_path / "r.toml",
        [(f"d{n}", d.app_url, [organisations[n]]) for n, d in enumerate(databases)],
    )
    fleet = Fleet(load(registry), settings(registry, pool_total_max=cap))

    def ringer_for(database: db.Database) -> Ringer:
        ringer = Ringer(database.url, 0.002, budget=fleet.budget)
        ringer.start()
        database.ring = ringer.ring
        return ringer

    peak = {"server": 0, "budget": 0}
    done: list[int] = []

    async def sample() -> None:
        while True:
            counted = sum((await backends(admin, names)).values())
            peak["server"] = max(peak["server"], counted)
            peak["budget"] = max(peak["budget"], fleet.budget.in_use())
            await asyncio.sleep(0.005)

    async def worker(w: int) -> None:
        for n in range(w, transactions, workers):
            organisation_id = organisations[n % len(organisations)]
            async with fleet.lease(organisation_id) as database, database.tenant(
                identity(organisation_id)
            ) as conn:  # a write: it rings its database's doorbell after COMMIT
                await conn.execute("SELECT pg_sleep(0.01)")
            done.append(n)

    async with running(fleet):
        await fleet.set_companion(ringer_for)
        engines = Engines(fleet, fleet.settings, Pacer(0))
        sampler = asyncio.create_task(sample())
        try:
            hub = await engines.acquire(identity(organisations[0]))
            assert await engines.running["d0"].listener.wait_connected(5)
            await asyncio.gather(*(worker(w) for w in range(workers)))
            await asyncio.sleep(0.1)  # the last rings
            engines.release(hub)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await engines.stop()
            await fleet.set_companion(None)
    assert sorted(done) == list(range(transactions))
    assert peak["server"] <= cap, peak
    assert peak["budget"] <= cap, peak
    assert fleet.budget.opened > cap, "connections were closed to make room and opened again"


@pytest.mark.db
async def test_at_the_cap_with_nothing_idle_a_request_waits_then_gets_503(
    databases: list[Database], tmp_path: Path
) -> None:
    registry = write_registry(
        tmp_path / "r.toml",
        [("a", databases[0].app_url, [ORG_A]), ("b", databases[1].app_url, [ORG_B])],
    )
    fleet = Fleet(load(registry), settings(registry, pool_total_max=2))
    fleet.budget.timeout = 0.5
    async with running(fleet):
        async with fleet.lease(ORG_A) as a, a.tenant(identity(ORG_A)), a.tenant(identity(ORG_A)):
            # Both connections are held by transactions: nothing can be closed for b.
            with pytest.raises(db.DatabaseUnavailable):
                await database_of(fleet, ORG_B)
        assert await database_of(fleet, ORG_B) == databases[1].name


def test_pool_settings_are_validated() -> None:
    assert Settings().pool_idle_s == 60 and Settings().pool_total_max == 40
    with pytest.raises(ConfigError, match="VECHAT_POOL_TOTAL_MAX"):
        Settings(pool_total_max=1)
    with pytest.raises(ConfigError, match="VECHAT_POOL_IDLE_S"):
        Settings(pool_idle_s=0)


# --- realtime ---------------------------------------------------------------------------------


@pytest.mark.db
async def test_a_listener_runs_per_database_with_sockets_and_stops_after_they_leave(
    databases: list[Database], tmp_path: Path, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    a, b = databases[:2]
    names = [a.name, b.name]
    registry = write_registry(
        tmp_path / "r.toml", [("a", a.app_url, [ORG_A]), ("b", b.app_url, [ORG_B])]
    )
    fleet = Fleet(load(registry), settings(registry))
    async with running(fleet):
        engines = Engines(fleet, fleet.settings, Pacer(0), linger_s=0.5)
        try:
            assert await backends(admin, names, "%listener") == {}
            first = await engines.acquire(identity(ORG_A, 11))
            second = await engines.acquire(identity(ORG_A, 12))
            assert first is second, "one hub per database"
            assert await engines.running["a"].listener.wait_connected(5)
            assert await backends(admin, names, "%listener") == {a.name: 1}
            other = await engines.acquire(identity(ORG_B))
            assert other is not first and other.database is fleet.slots["b"].database
            assert await engines.running["b"].listener.wait_connected(5)
            assert await backends(admin, names, "%listener") == {a.name: 1, b.name: 1}
            assert await engines.readiness() == {"realtime:a": "ok", "realtime:b": "ok"}

            engines.release(first)
            await asyncio.sleep(0.8)
            assert "a" in engines.running, "a socket of a is still there"
            engines.release(second)
            await asyncio.sleep(0.2)
            back = await engines.acquire(identity(ORG_A))  # within the linger: the same engine
            assert back is first and engines.running["a"].listener.connects == 1
            engines.release(back)
            # Stopped: gone from the running engines, and its pool let go once it has stopped.
            await eventually(
                lambda: "a" not in engines.running and fleet.slots["a"].users == 0, 5, "a stopped"
            )
            assert await backends(admin, names, "%listener") == {b.name: 1}

            again = await engines.acquire(identity(ORG_A))
            assert again is not first, "a new engine once the old one stopped"
            engines.release(again)
            engines.release(other)
        finally:
            await engines.stop()
    assert await backends(admin, names) == {}


# --- the app in registry mode -----------------------------------------------------------------


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_an_organisation_the_registry_does_not_place_gets_401_problem(
    databases: list[Database], tmp_path: Path
) -> None:
    registry = write_registry(tmp_path / "r.toml", [("a", databases[0].app_url, [ORG_A])])
    # The app's logging configuration replaces the root handlers (and pytest's caplog with them).
    collected = Collected()
    logging.getLogger("vechat_rls.api.security").addHandler(collected)
    try:
        async with AsyncTestClient(create_app(settings(registry))) as client:
            assert (await client.get("/api/v1/me", headers=headers(ORG_A))).status_code == 200
            refused = await client.get("/api/v1/me", headers=headers(ORG_D))
    finally:
        logging.getLogger("vechat_rls.api.security").removeHandler(collected)
    body = assert_problem(refused, 401)
    assert body["detail"] == f"organisation {ORG_D} is not served here"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert any(f"organisation {ORG_D}" in line for line in collected.lines), collected.lines
    assert not any("eyJ" in line for line in collected.lines), "never the token"


async def test_readyz_reports_each_database_and_a_down_one_degrades_only_its_organisations(
    databases: list[Database], tmp_path: Path
) -> None:
    down = f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/gone"
    registry = write_registry(
        tmp_path / "r.toml",
        [("a", databases[0].app_url, [ORG_A]), ("b", databases[1].app_url, [ORG_B]),
         ("down", down, [ORG_C])],
    )
    async with AsyncTestClient(create_app(settings(registry))) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "checks": {"database:a": "idle", "database:b": "idle", "database:down": "idle"},
        }
        assert (await client.get("/api/v1/me", headers=headers(ORG_A))).status_code == 200
        failed = await client.get("/api/v1/me", headers=headers(ORG_C))
        assert_problem(failed, 503)
        assert int(failed.headers["retry-after"]) >= 1
        assert (await client.get("/api/v1/me", headers=headers(ORG_B))).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "degraded",
            "checks": {"database:a": "ok", "database:b": "ok", "database:down": "unavailable"},
        }
        metrics = (await client.get("/metrics")).text
        assert 'vechat_database_pool_open{database="a"} 1.0' in metrics
        assert 'vechat_database_pool_open{database="down"} 0.0' in metrics


async def test_readyz_is_503_when_no_database_of_the_registry_answers(tmp_path: Path) -> None:
    registry = write_registry(
        tmp_path / "r.toml",
        [("x", f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/gone", [ORG_A])],
    )
    async with AsyncTestClient(create_app(settings(registry))) as client:
        assert_problem(await client.get("/api/v1/me", headers=headers(ORG_A)), 503)
        ready = await client.get("/readyz")
        body = assert_problem(ready, 503)
        assert body["checks"] == {"database:x": "unavailable"}


# --- serve: registry errors and startup checks ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "cannot read registry"),
        ("[[databases]\n", "registry"),
        ('[[databases]]\nname = "a"\norganisations = [1]\n', "databases[0] (a): url missing"),
        ('[[databases]]\nname = "a"\nurl = "postgresql://x@h/d"\n', "organisations missing"),
        (
            '[[databases]]\nname = "a"\nurl = "postgresql://x@h/a"\norganisations = [1]\n'
            '[[databases]]\nname = "b"\nurl = "postgresql://x@h/b"\norganisations = [1]\n',
            "organisation 1 is also in 'a'",
        ),
        ('[[databases]]\nname = "a"\nurl = "postgresql://x@h/a"\nschema = 1\n', "unknown key"),
    ],
    ids=["missing", "bad-toml", "no-url", "no-organisations", "organisation-twice", "unknown-key"],
)
def test_serve_with_an_unusable_registry_is_a_one_line_error_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str | None,
    expected: str,
) -> None:
    path = tmp_path / "registry.toml"
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv("VECHAT_REGISTRY", str(path))
    monkeypatch.setenv("VECHAT_JWT_SECRET", SECRET)
    assert cli.main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vechat-rls: ") and err.count("\n") == 1, err
    assert expected in err and str(path) in err


def test_serve_checks_every_database_and_warns_about_one_that_is_away(
    databases: list[Database], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    away = f"postgresql://vechat_app:pw-not-shown@127.0.0.1:{free_port()}/gone"
    registry = write_registry(
        tmp_path / "r.toml",
        [("a", databases[0].app_url, [ORG_A]), ("b", databases[1].app_url, [ORG_B]),
         ("away", away, [ORG_C])],
    )
    check_before_serving(settings(registry), allow_privileged_role=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WARNING: database away is unreachable" in err
    assert "pw-not-shown" not in err


@pytest.mark.parametrize("problem", ["superuser", "wrong-password", "all-away"])
def test_serve_refuses_to_start_for_an_unsafe_role_a_refused_login_or_nothing_reachable(
    databases: list[Database], tmp_path: Path, problem: str
) -> None:
    good = databases[0].app_url
    second = {
        "superuser": databases[1].admin_url,
        "wrong-password": databases[1].app_url.replace(":vechat_app@", ":wrong@"),
        "all-away": f"postgresql://vechat_app:x@127.0.0.1:{free_port()}/gone",
    }[problem]
    first = second if problem == "all-away" else good
    registry = write_registry(
        tmp_path / "r.toml", [("a", first, [ORG_A]), ("b", second, [ORG_B])]
    )
    with pytest.raises(cli.CliError) as refused:
        check_before_serving(settings(registry), allow_privileged_role=False)
    assert refused.value.exit_code == 1
    message = str(refused.value)
    assert "\n" not in message
    expected = {
        "superuser": "refusing to serve database b: role 'postgres' is a superuser",
        "wrong-password": "database b: cannot connect",
        "all-away": "no database of the registry is reachable",
    }[problem]
    assert expected in message, message
