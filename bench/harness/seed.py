"""Seeding a benchmark database: contacts, conversations and messages, as the application writes.

One vocabulary for every benchmark: organisation N has personnel 1..P (role `commercial`) and
clients 1..C; a conversation is a (personnel, client) pair; messages go from the personnel user
to the client. Rows are written through a superuser's connection but under the writing user's
context (`set_config`, transaction-local), so the triggers keep the counters, the last message,
the event log and its cursors exactly as in production.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]

INSERT_CONTACT = """
INSERT INTO public.vechat_contacts
    (organisation_id, user_id, user_type, display_name, email, role, assigned_personnel)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
SET_CONTEXT = """
SELECT set_config('vechat.organisation_id', %s, true), set_config('vechat.user_id', %s, true),
       set_config('vechat.user_type', %s, true)
"""
CREATE_CONVERSATION = """
INSERT INTO public.vechat_conversations
    (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type)
VALUES (%s, %s, %s, %s, %s)
RETURNING id
"""
INSERT_MESSAGE = """
INSERT INTO public.vechat_messages
    (organisation_id, conversation_id, sender_id, sender_type, receiver_id, receiver_type, message)
VALUES (%s, %s, %s, 'personnel', %s, 'client', %s)
"""
INSERT_HISTORY = """
INSERT INTO public.vechat_messages (organisation_id, conversation_id, sender_id, sender_type,
                                    receiver_id, receiver_type, message)
SELECT %s, %s, %s, 'personnel', %s, 'client', 'history ' || n FROM generate_series(1, %s) n
"""


Pairing = Callable[[int], Iterable[int]]
"""personnel id → the clients it has a conversation with."""
History = Callable[["Seeder", int, int, int, int], None]
"""(seeder, organisation, conversation, personnel, client) → writes the conversation's first
messages."""


class Seeder:
    """Writes one database's benchmark rows through `conn`; transactions are the caller's."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def contacts(self, organisation_id: int, personnel: int, clients: int) -> None:
        """Personnel 1..`personnel` and clients 1..`clients` of one organisation."""
        org = organisation_id
        rows: list[tuple[object, ...]] = [
            (org, p, "personnel", f"Personnel {p}", f"p{p}@org{org}.example", "commercial", [])
            for p in range(1, personnel + 1)
        ] + [
            (org, c, "client", f"Client {c}", f"c{c}@org{org}.example", None, [])
            for c in range(1, clients + 1)
        ]
        with self.conn.cursor() as cur:
            cur.executemany(INSERT_CONTACT, rows)

    def act_as(self, organisation_id: int, personnel_id: int) -> None:
        """What follows in this transaction is written by this personnel user."""
        self.conn.execute(SET_CONTEXT, (str(organisation_id), str(personnel_id), "personnel"))

    def conversation(self, organisation_id: int, personnel_id: int, client_id: int) -> int:
        """A new conversation of a personnel user and a client; its id."""
        # Pairs are stored normalised: lower id first; equal ids, 'client' < 'personnel'.
        pair = ((client_id, "client", personnel_id, "personnel") if client_id <= personnel_id
                else (personnel_id, "personnel", client_id, "client"))
        row = self.conn.execute(CREATE_CONVERSATION, (organisation_id, *pair)).fetchone()
        assert row is not None
        return int(row[0])

    def messages(self, organisation_id: int, conversation_id: int, personnel_id: int,
                 client_id: int, bodies: Iterable[str]) -> None:
        """A message from the personnel user to the client for each body, in order."""
        with self.conn.cursor() as cur:
            cur.executemany(INSERT_MESSAGE, [
                (organisation_id, conversation_id, personnel_id, client_id, body)
                for body in bodies])

    def history(self, organisation_id: int, conversation_id: int, personnel_id: int,
                client_id: int, count: int) -> None:
        """`count` messages ('history 1', …) from the personnel user to the client, in one
        statement."""
        self.conn.execute(INSERT_HISTORY, (organisation_id, conversation_id, personnel_id,
                                           client_id, count))

    def organisation(self, organisation_id: int, personnel: int, clients: int, pairing: Pairing,
                     history: History | None = None) -> dict[tuple[int, int], int]:
        """Contacts of one organisation, and a conversation of each personnel user p with each
        client in `pairing(p)`, each followed by its `history` (written by p);
        → {(personnel, client): conversation id}."""
        self.contacts(organisation_id, personnel, clients)
        conversations = {}
        for p in range(1, personnel + 1):
            self.act_as(organisation_id, p)
            for c in pairing(p):
                conversations[(p, c)] = self.conversation(organisation_id, p, c)
                if history is not None:
                    history(self, organisation_id, conversations[(p, c)], p, c)
        return conversations

    def analyze(self) -> None:
        """ANALYZE and commit. Plans need the statistics of tables with rows: one made from an
        empty table's (the first connection's first statement) looks messages up by another
        index than the primary key, scanning the organisation's messages, until the next ANALYZE.
        """
        self.conn.execute("ANALYZE")
        self.conn.commit()


def seed_organisations(admin_url: str, organisations: int, personnel: int, clients: int,
                       pairing: Pairing, history: History | None = None,
                       ) -> dict[tuple[int, int, int], int]:
    """Organisations 1..`organisations`, each seeded by `Seeder.organisation` in a transaction of
    its own, then ANALYZE; → {(organisation, personnel, client): conversation id}."""
    conversations = {}
    with psycopg.connect(admin_url) as conn:
        seeder = Seeder(conn)
        for org in range(1, organisations + 1):
            with conn.transaction():
                made = seeder.organisation(org, personnel, clients, pairing, history)
            conversations.update({(org, p, c): id_ for (p, c), id_ in made.items()})
        seeder.analyze()
    return conversations


def legacy_schema() -> ModuleType:
    """tests/support/legacy.py: the old VeChat module's schema as the tests build it (`build(url)`),
    loaded by its path: the repository's root need not be on sys.path."""
    name = "vechat_bench_legacy"
    if name not in sys.modules:
        path = ROOT / "tests" / "support" / "legacy.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return sys.modules[name]
