"""The demo: embedded PostgreSQL in ./.vechat/, migrated, two demo organisations, sign-in links.

Everything lives in one directory (default `./.vechat/`): the cluster, and `demo.json` with a
generated JWT secret, the `vechat_app` password, the first context key and the cluster's TCP
port (chosen once, so that the URLs the demo prints keep working after a restart). Running it
again reuses them, so the demo's data survives restarts; delete the directory to start over. The
demo data is inserted the way the application would write it -- under each sender's tenant
context -- so the triggers keep counters and the event log.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from vechat_rls import migrate
from vechat_rls.auth import mint_token
from vechat_rls.db import context
from vechat_rls.pgserver import PgServer, embedded_bindir, free_port

DATABASE = "vechat"
TOKEN_TTL_S = 12 * 3600
DEFAULT_DIRECTORY = Path(".vechat")
STATE_FILE = "demo.json"

# Two organisations whose users share numeric ids on purpose: isolation is by organisation, not
# by id, and the demo shows it (personnel 1 of organisation 1 never sees personnel 1 of 2).
ORGANISATIONS: dict[int, str] = {1: "Velosi Logistics", 2: "Acme Freight"}
CONTACTS: list[dict[str, Any]] = [
    {"org": 1, "id": 1, "type": "personnel", "name": "Alice Martin", "role": "admin",
     "email": "alice@velosi.example"},
    {"org": 1, "id": 2, "type": "personnel", "name": "Bruno Lefèvre", "role": "commercial",
     "email": "bruno@velosi.example"},
    {"org": 1, "id": 3, "type": "client", "name": "Chloé Dubois", "role": None,
     "email": "chloe@client.example", "assigned": [2]},
    {"org": 2, "id": 1, "type": "personnel", "name": "Dmitri Ivanov", "role": "commercial",
     "email": "dmitri@acme.example"},
    {"org": 2, "id": 3, "type": "client", "name": "Eva Schmidt", "role": None,
     "email": "eva@client.example"},
]
# (org, sender, receiver, body): sender/receiver as (type, id).
MESSAGES: list[tuple[int, tuple[str, int], tuple[str, int], str]] = [
    (1, ("client", 3), ("personnel", 2), "Bonjour Bruno, where is shipment VL-1042?"),
    (1, ("personnel", 2), ("client", 3), "Hi Chloé, it left Marseille this morning."),
    (1, ("personnel", 1), ("personnel", 2), "Bruno, can you take the Dubois account this week?"),
    (2, ("client", 3), ("personnel", 1), "Hello Dmitri, is our container cleared?"),
]

INSERT_CONTACT = """
INSERT INTO public.vechat_contacts
    (organisation_id, user_id, user_type, display_name, email, role, assigned_personnel)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (organisation_id, user_type, user_id) DO NOTHING
"""
SET_CONTEXT = "SELECT vechat.act_as(%s, %s, %s)"  # the DBA's way to act as a user
CREATE_CONVERSATION = """
INSERT INTO public.vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (organisation_id, participant1_id, participant1_type, participant2_id,
             participant2_type)
DO UPDATE SET updated_at = vechat_conversations.updated_at
RETURNING id
"""
INSERT_MESSAGE = """
INSERT INTO public.vechat_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type,
     message, client_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (organisation_id, sender_type, sender_id, client_id) DO NOTHING
"""


def _state(directory: Path, pg_port: int | None) -> dict[str, Any]:
    """The demo's secrets and port, generated once and kept beside the cluster; `pg_port`, when
    given, replaces the kept port (and is kept)."""
    path = directory / STATE_FILE
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    before = dict(state)
    state.setdefault("jwt_secret", secrets.token_urlsafe(48))
    state.setdefault("app_password", secrets.token_urlsafe(24))
    # The demo's first context key (docs/dba.md), kept with the other secrets (a demo directory
    # made before signed contexts gets one too).
    state.setdefault("context_key", context.new_key("demo").text())
    if pg_port is not None:
        state["pg_port"] = pg_port
    state.setdefault("pg_port", free_port())  # a demo.json from before ports were kept: now
    if state != before:
        _save(path, state)
    return state


def _save(path: Path, state: dict[str, Any]) -> None:
    path.write_text(json.dumps(state))
    path.chmod(0o600)


def demo_secret(directory: Path = DEFAULT_DIRECTORY) -> str | None:
    """The JWT secret of the demo set up in `directory`, or None when there is none."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    secret = state.get("jwt_secret") if isinstance(state, dict) else None
    return secret if isinstance(secret, str) and secret else None


def _seed(admin_url: str) -> None:
    with psycopg.connect(admin_url) as conn:
        for c in CONTACTS:
            conn.execute(INSERT_CONTACT, (c["org"], c["id"], c["type"], c["name"], c["email"],
                                          c["role"], c.get("assigned", [])))
        for number, (org, sender, receiver, body) in enumerate(MESSAGES, start=1):
            with conn.transaction():
                # As the sender, like the API: the policies and triggers see a real context.
                conn.execute(SET_CONTEXT, (org, sender[1], sender[0]))
                first, second = sorted([sender, receiver], key=lambda p: (p[1], p[0]))
                row = conn.execute(CREATE_CONVERSATION,
                                   (org, first[1], first[0], second[1], second[0])).fetchone()
                assert row is not None
                conn.execute(INSERT_MESSAGE, (org, row[0], sender[1], sender[0], receiver[1],
                                              receiver[0], body, f"demo-{number}"))


def prepare(
    directory: Path, *, pg_port: int | None = None, say: Callable[[str], None] = lambda line: None
) -> tuple[PgServer, dict[str, str]]:
    """Start (or reuse) the demo cluster, migrate it, seed it; returns it and the settings.

    The cluster listens on the port kept in `demo.json` (`pg_port` replaces it). `say` hears
    the migration's progress, one line at a time.
    """
    directory.mkdir(parents=True, exist_ok=True)
    state = _state(directory, pg_port)
    server = PgServer(datadir=directory / "postgres", bindir=embedded_bindir(), fast=False,
                      port=int(state["pg_port"]))
    server.start()
    if server.port != state["pg_port"]:  # a cluster left running on another port: say where
        state["pg_port"] = server.port
        _save(directory / STATE_FILE, state)
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    admin_url = server.admin_url(DATABASE)
    target = migrate.Target(name="demo", admin_url=admin_url)
    key = str(state["context_key"])
    # `db migrate` installs the keys of VECHAT_CONTEXT_KEY the database lacks: the demo's own.
    previous = os.environ.get(context.KEY_VARIABLE)
    os.environ[context.KEY_VARIABLE] = key
    try:
        migrate.migrate(target, migrate.load_layout(), say=say)
    finally:
        if previous is None:
            del os.environ[context.KEY_VARIABLE]
        else:
            os.environ[context.KEY_VARIABLE] = previous
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE vechat_app LOGIN PASSWORD {}").format(
                psycopg.sql.Literal(state["app_password"])
            )
        )
    _seed(admin_url)
    env = {
        "VECHAT_DATABASE_URL": server.url("vechat_app", state["app_password"], DATABASE),
        "VECHAT_ADMIN_DATABASE_URL": admin_url,
        "VECHAT_JWT_SECRET": state["jwt_secret"],
        "VECHAT_CONTEXT_KEY": key,
    }
    return server, env


def sign_in_links(base_url: str, jwt_secret: str) -> list[str]:
    lines = []
    for c in CONTACTS:
        token = mint_token(
            organisation_id=c["org"], user_id=c["id"], user_type=c["type"], key=jwt_secret,
            role=c["role"], name=c["name"], ttl_s=TOKEN_TTL_S,
            extra={"org_name": ORGANISATIONS[c["org"]]},  # display only: the client's header
        )
        label = f"{ORGANISATIONS[c['org']]} · {c['type']} {c['id']} · {c['name']}"
        lines.append(f"  {label}\n    {base_url}/?access_token={token}")
    return lines
