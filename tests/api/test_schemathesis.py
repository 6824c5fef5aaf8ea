"""Schemathesis against the served OpenAPI document: generated requests never get a 500.

A real `vechat-rls serve` process on the session's database; every operation of `/schema` is
called with a bounded number of generated examples, as a personnel user of a seeded organisation
(with and without a token). Whatever the input, the answer is a 2xx/3xx/4xx — or a 503 with
`Retry-After` — never a 5xx stack trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.api import Caller
from tests.support.chat import Org, seed_directory
from tests.support.fixtures import Database
from tests.support.realtime import Server, running
from tests.support.seed import new_organisation_ids, purge_organisations

MAX_EXAMPLES = 20
ORG = Org(new_organisation_ids(1)[0])


@pytest.fixture(scope="module")
def server(migrated_database: Database) -> Iterator[Server]:
    seed_directory(migrated_database.admin_url, ORG)
    with running(migrated_database.app_url) as servers:
        yield servers[0]
    purge_organisations(migrated_database.admin_url, [ORG.id])


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    loaded = schemathesis.openapi.from_url(server.base + "/schema/openapi.json")
    return loaded.exclude(path_regex="^/api/v1/ws")


def _check(response: Any) -> None:
    status = response.status_code
    assert status < 500 or (status == 503 and "retry-after" in response.headers), (
        f"{status} for {response.request.method} {response.request.url}: {response.text[:300]}"
    )


def test_generated_requests_never_get_a_server_error(api_schema: Any) -> None:
    caller: Caller = ORG.staff
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]

    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(headers=caller.headers, timeout=10)
            statuses[response.status_code] += 1
            _check(response)

        call()
    # Not vacuous: the generated requests reached handlers, some accepted, many refused.
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) >= 10, statuses
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) >= 10, statuses
    print(dict(sorted(statuses.items())))
