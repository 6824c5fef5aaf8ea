"""Schemathesis against the served OpenAPI document: no 500, and the document says what happens.

A real `vechat-rls serve` process on the session's database; every operation of `/schema` is
called with a bounded number of generated examples, as a personnel user of a seeded organisation.
Whatever the input, the answer is a 2xx/3xx/4xx — or a 503 with `Retry-After` — never a 5xx
stack trace; and every answer is one the document declares for that operation: its status, its
media type, its body's schema (schemathesis's conformance checks).

Generated requests rarely reach a 403, 409, 422 or 429, so a table of scenarios provokes each
answer each operation can give, on purpose, and holds it to the same checks: an operation that
answers a status its document does not list fails here, and so does a problem whose `type` is
not the one of its status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import Caller
from tests.support.chat import Org, admin_sql, insert_attachment, seed_directory
from tests.support.fixtures import Database
from tests.support.realtime import Server, running
from tests.support.seed import new_organisation_ids, purge_organisations
from vechat_rls.api.problems import PROBLEM_JSON, problem_type
from vechat_rls.chat.messages.sending import RATE_LIMIT_ACTION

MAX_EXAMPLES = 20
ORG, SCENE = (Org(id_) for id_ in new_organisation_ids(2))
# Small enough for the scenarios to reach 413 cheaply, large enough for generated bodies.
LIMITS = {
    "VECHAT_MAX_BODY_BYTES": "65536",
    "VECHAT_MAX_UPLOAD_BYTES": "65536",
    "VECHAT_MAX_VOICE_BYTES": "32768",
}


@pytest.fixture(scope="module")
def server(migrated_database: Database) -> Iterator[Server]:
    for org in (ORG, SCENE):
        seed_directory(migrated_database.admin_url, org)
    with running(migrated_database.app_url, **LIMITS) as servers:
        yield servers[0]
    purge_organisations(migrated_database.admin_url, [ORG.id, SCENE.id])


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


CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_answer_is_one_the_document_declares(api_schema: Any) -> None:
    """An undeclared status (a 404 or 422 the operation does not list), a media type the
    document does not name (`/metrics` is text, not JSON) or a body off its schema fails here.
    Every violation is collected before failing, one line per operation and kind."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    violations: set[str] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(headers=ORG.staff.headers, timeout=10)
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except FailureGroup as failed:  # one failure per check that failed
                for failure in failed.exceptions:
                    title = str(getattr(failure, "title", type(failure).__name__))
                    detail = str(getattr(failure, "message", failure)).splitlines()
                    label = case.operation.label
                    violations.add(f"{label}: {title}: {' / '.join(detail)[:160]}")

        call()
    assert not violations, "\n".join(sorted(violations))


@dataclass(frozen=True)
class Scenario:
    """One request an operation must answer with `status`; `as_` makes it (SCENE's staff by
    default; None: no token)."""

    method: str
    path: str
    status: int
    path_parameters: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str | None = None
    as_: Caller | None = SCENE.staff

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.path_parameters or ''} → {self.status}"


API = "/api/v1"
MISSING = 2**62  # an id nobody has


def _scenarios(server: Server, admin_url: str) -> list[Scenario]:
    """Every answer each operation is known to give, with what it takes to get it."""
    staff, client = SCENE.staff, SCENE.client
    http = httpx.Client(base_url=server.base + API, timeout=10)
    created = http.post("/conversations", json={"peer": client.participant}, headers=staff.headers)
    assert created.status_code == 201, created.text
    conversation = created.json()["id"]
    other = http.post("/conversations", json={"peer": SCENE.client2.participant},
                      headers=staff.headers)
    assert other.status_code == 201, other.text

    def send(body: str) -> int:
        sent = http.post(f"/conversations/{conversation}/messages", json={"body": body},
                         headers=staff.headers)
        assert sent.status_code == 201, sent.text
        return int(sent.json()["id"])

    message, deleted = send("first"), send("to be deleted")
    gone = http.delete(f"/messages/{deleted}", params={"for": "everyone"}, headers=staff.headers)
    assert gone.status_code == 204, gone.text
    assert http.patch(f"/messages/{message}", json={"body": "first, edited"},
                      headers=staff.headers).status_code == 200
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    attachment = insert_attachment(admin_url, staff, "image/png", png)
    etag = http.get(f"/attachments/{attachment}", headers=staff.headers).headers["etag"]
    http.close()

    c, m, a = ({"conversation_id": conversation}, {"message_id": message},
               {"attachment_id": attachment})
    nothing = {"conversation_id": MISSING}
    peer_message = {"body": "hi", "receiver": client.participant}
    stranger = {"user_id": 999_999, "user_type": "client"}
    return [
        Scenario("GET", "/healthz", 200, as_=None),
        Scenario("GET", "/readyz", 200, as_=None),
        Scenario("GET", "/metrics", 200, as_=None),
        Scenario("GET", f"{API}/me", 200),
        Scenario("GET", f"{API}/me", 401, as_=None),
        Scenario("GET", f"{API}/conversations", 200),
        Scenario("GET", f"{API}/conversations", 400, query={"cursor": "not-a-cursor"}),
        Scenario("POST", f"{API}/conversations", 200, body={"peer": client.participant}),
        Scenario("POST", f"{API}/conversations", 201, body={"peer": SCENE.staff3.participant}),
        Scenario("POST", f"{API}/conversations", 400, body={"peer": staff.participant}),
        Scenario("POST", f"{API}/conversations", 404, body={"peer": stranger}),
        Scenario("POST", f"{API}/conversations", 413, body={"peer": "x" * 70_000}),
        Scenario("GET", f"{API}/conversations/{{conversation_id}}", 200, c),
        Scenario("GET", f"{API}/conversations/{{conversation_id}}", 404, nothing),
        Scenario("PATCH", f"{API}/conversations/{{conversation_id}}", 200, c,
                 body={"muted": True}),
        Scenario("PATCH", f"{API}/conversations/{{conversation_id}}", 404, nothing,
                 body={"muted": True}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/read", 200, c),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/read", 200, c,
                 body={"up_to_message_id": message}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/read", 404, nothing),
        Scenario("GET", f"{API}/conversations/{{conversation_id}}/messages", 200, c),
        Scenario("GET", f"{API}/conversations/{{conversation_id}}/messages", 404, nothing),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 201, c,
                 body={"body": "again", "client_id": "scenario-1"}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 200, c,
                 body={"body": "again", "client_id": "scenario-1"}),
        # A client_id already used in another conversation.
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 409,
                 {"conversation_id": other.json()["id"]},
                 body={"body": "again", "client_id": "scenario-1"}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 422, c,
                 body={"body": "   "}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 404, nothing,
                 body={"body": "hello"}),
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 404, c,
                 body={"body": "hello", "reply_to_id": MISSING}),
        Scenario("POST", f"{API}/messages", 201, body={**peer_message, "client_id": "s-2"}),
        Scenario("POST", f"{API}/messages", 200, body={**peer_message, "client_id": "s-2"}),
        Scenario("POST", f"{API}/messages", 409,
                 body={**peer_message, "client_id": "s-2", "receiver": SCENE.client2.participant}),
        Scenario("POST", f"{API}/messages", 404, body={"body": "hi", "receiver": stranger}),
        Scenario("POST", f"{API}/messages", 422,
                 body={"receiver": client.participant, "message_type": "location"}),
        Scenario("POST", f"{API}/messages/read", 200, body={"message_ids": [message]},
                 as_=client),
        Scenario("GET", f"{API}/messages/search", 200, query={"q": "first"}),
        Scenario("GET", f"{API}/messages/search", 404,
                 query={"q": "first", "conversation_id": MISSING}),
        Scenario("PATCH", f"{API}/messages/{{message_id}}", 200, m, body={"body": "edited"}),
        Scenario("PATCH", f"{API}/messages/{{message_id}}", 403, m, body={"body": "mine"},
                 as_=client),
        Scenario("PATCH", f"{API}/messages/{{message_id}}", 404, {"message_id": MISSING},
                 body={"body": "x"}),
        Scenario("PATCH", f"{API}/messages/{{message_id}}", 422, {"message_id": deleted},
                 body={"body": "x"}),
        Scenario("GET", f"{API}/messages/{{message_id}}/edits", 200, m),
        Scenario("GET", f"{API}/messages/{{message_id}}/edits", 404, {"message_id": MISSING}),
        Scenario("DELETE", f"{API}/messages/{{message_id}}", 403, m,
                 query={"for": "everyone"}, as_=client),
        Scenario("DELETE", f"{API}/messages/{{message_id}}", 404, {"message_id": MISSING}),
        Scenario("DELETE", f"{API}/messages/{{message_id}}", 204, m, query={"for": "me"},
                 as_=client),
        Scenario("GET", f"{API}/contacts", 200),
        Scenario("PUT", f"{API}/contacts", 403,
                 body={"items": [{"user_id": 99, "user_type": "client"}]}),
        Scenario("GET", f"{API}/settings", 200),
        Scenario("PATCH", f"{API}/settings", 200, body={"custom_settings": {"a": 1}}),
        Scenario("PATCH", f"{API}/settings", 400,
                 body={"custom_settings": {"a": "x" * 17_000}}),
        Scenario("GET", f"{API}/presence", 200, query={"users": "client:12"}),
        Scenario("GET", f"{API}/presence", 400, query={"users": "nobody"}),
        Scenario("PUT", f"{API}/presence", 200, body={"status": "away"}),
        Scenario("GET", f"{API}/stats", 200),
        Scenario("POST", f"{API}/attachments", 201, body={"file": png},
                 media_type="multipart/form-data"),
        Scenario("POST", f"{API}/attachments", 413, body={"file": b"x" * 70_000},
                 media_type="multipart/form-data"),
        Scenario("GET", f"{API}/attachments/{{attachment_id}}", 200, a),
        Scenario("GET", f"{API}/attachments/{{attachment_id}}", 206, a,
                 headers={"Range": "bytes=0-9"}),
        Scenario("GET", f"{API}/attachments/{{attachment_id}}", 304, a,
                 headers={"If-None-Match": etag}),
        Scenario("GET", f"{API}/attachments/{{attachment_id}}", 416, a,
                 headers={"Range": "bytes=5000-6000"}),
        Scenario("GET", f"{API}/attachments/{{attachment_id}}", 404,
                 {"attachment_id": MISSING}),
        Scenario("DELETE", f"{API}/conversations/{{conversation_id}}", 404, nothing),
        Scenario("DELETE", f"{API}/conversations/{{conversation_id}}", 204,
                 {"conversation_id": other.json()["id"]}),
        # Last: the sender's rate limit is used up (its counter set as the superuser).
        Scenario("POST", f"{API}/conversations/{{conversation_id}}/messages", 429, c,
                 body={"body": "one too many"}),
        Scenario("POST", f"{API}/messages", 429, body=peer_message),
    ]


def _use_up_rate_limit(admin_url: str, caller: Caller) -> None:
    admin_sql(
        admin_url,
        """INSERT INTO vechat_rate_limits
               (organisation_id, user_type, user_id, action, window_start, hits)
           VALUES (%s, %s, %s, %s, to_timestamp(floor(extract(epoch FROM now()) / 60) * 60),
                   1000000)
           ON CONFLICT (organisation_id, user_type, user_id, action)
           DO UPDATE SET window_start = EXCLUDED.window_start, hits = EXCLUDED.hits""",
        caller.organisation_id, caller.user_type, caller.user_id, RATE_LIMIT_ACTION,
    )


def test_each_answer_an_operation_gives_is_declared(
    api_schema: Any, server: Server, migrated_database: Database
) -> None:
    """Every status each operation is known to answer (the table above), provoked on purpose:
    declared for that operation with its media type and schema; a problem's `type` is its
    status's; a request that succeeds without a body is not documented as needing one. Every
    deviation is listed before failing."""
    document = schemathesis.openapi.from_url(server.base + "/schema/openapi.json")
    scenarios = _scenarios(server, migrated_database.admin_url)
    wrong: list[str] = []
    for scenario in scenarios:
        if scenario.status == 429:
            _use_up_rate_limit(migrated_database.admin_url, SCENE.staff)
        operation = document[scenario.path][scenario.method]
        case = operation.Case(
            path_parameters=scenario.path_parameters,
            query=scenario.query,
            headers=scenario.headers,
            **({} if scenario.body is None else {"body": scenario.body}),
            media_type=scenario.media_type,
        )
        headers = scenario.as_.headers if scenario.as_ else {}
        response = case.call(headers=headers, timeout=10)
        if response.status_code != scenario.status:  # the scenario did not reach its answer
            wrong.append(f"{scenario}: got {response.status_code} {response.text[:200]}")
            continue
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except FailureGroup as failed:
            for failure in failed.exceptions:
                title = str(getattr(failure, "title", type(failure).__name__))
                detail = " / ".join(str(getattr(failure, "message", failure)).splitlines())
                wrong.append(f"{scenario}: {title}: {detail[:200]}")
        if response.headers.get("content-type", [""])[0].startswith(PROBLEM_JSON):
            kind = response.json()["type"]
            if kind != problem_type(scenario.status):
                wrong.append(f"{scenario}: problem type {kind}")
        if scenario.body is None and response.status_code < 300:
            required = (operation.definition.raw.get("requestBody") or {}).get("required")
            if required:
                wrong.append(f"{scenario}: answered without a body its document requires")
    assert not wrong, "\n".join(wrong)
    # Every operation of the document has at least one scenario.
    covered = {(s.method, s.path) for s in scenarios}
    listed = {(op.method.upper(), op.path) for op in
              (result.ok() for result in document.get_all_operations())}
    assert listed - covered == set(), sorted(listed - covered)
