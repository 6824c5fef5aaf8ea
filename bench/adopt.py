"""How long adopting a large legacy VeChat database takes, and how long its tables stay locked.

Starts its own durable PostgreSQL 18 (fsync and synchronous_commit on), builds a legacy database
of --messages messages over --conversations pairs (--orphans of those pairs without a conversation
row), with the old module's indexes and triggers and 1,000 presence and settings rows, then runs
`vechat-rls db migrate` on it as a DBA would (a subprocess, so the whole command is timed), and
`db rollback --to 0` after it. The baseline, in the same cluster and run: the same messages copied
with one INSERT … SELECT into a table shaped and indexed like the new vechat_messages (its
columns, keys, foreign key to the conversations and full-text index), the floor of writing them
once into the new schema.

    .venv/bin/python bench/adopt.py                  # 1,000,000 messages, 20,000 conversations
    .venv/bin/python bench/adopt.py --messages 20000 --conversations 400   # a smoke run (~15 s)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import psycopg

from harness.cluster import create_database, private_cluster, workdir
from harness.seed import legacy_schema

PERSONNEL = 200  # personnel ids 1..200; clients from 1000 on: every pair is (personnel, client)

LOAD_SQL = """
SET session_replication_role = replica;  -- the rows as the old module left them, triggers off
INSERT INTO vechat_conversations (id, participant1_id, participant1_type, participant2_id,
    participant2_type, unread_count_participant1, unread_count_participant2, created_at,
    updated_at)
SELECT k, 1 + (k - 1) % {personnel}, 'personnel', 1000 + (k - 1) / {personnel}, 'client',
       (k % 7) * 2, CASE WHEN k % 5 = 0 THEN NULL ELSE k % 3 END,
       timestamp '2024-01-01' + make_interval(secs => k), timestamp '2024-01-01'
FROM generate_series(1, {conversations} - {orphans}) k;
SELECT setval('vechat_conversations_id_seq', {conversations});

INSERT INTO vechat_messages (id, sender_id, sender_type, receiver_id, receiver_type, message,
    message_type, audio_duration, reply_to_message_id, is_read, read_at, is_delivered,
    delivered_at, is_deleted_by_receiver, created_at, updated_at)
SELECT m,
       CASE WHEN m % 2 = 0 THEN 1 + (k - 1) % {personnel} ELSE 1000 + (k - 1) / {personnel} END,
       CASE WHEN m % 2 = 0 THEN 'personnel' ELSE 'client' END,
       CASE WHEN m % 2 = 0 THEN 1000 + (k - 1) / {personnel} ELSE 1 + (k - 1) % {personnel} END,
       CASE WHEN m % 2 = 0 THEN 'client' ELSE 'personnel' END,
       CASE WHEN m % 97 = 0 THEN NULL ELSE 'message ' || m || ' ' || md5(m::text) END,
       CASE WHEN m % 97 = 0 THEN 'voice' ELSE 'text' END,
       CASE WHEN m % 97 = 0 THEN m % 60 END,
       CASE WHEN m % 10 = 0 AND m > {conversations} THEN m - {conversations} END,
       m % 3 <> 0,
       CASE WHEN m % 3 <> 0 THEN created + interval '1 minute' END,
       m % 3 <> 0,
       CASE WHEN m % 3 <> 0 THEN created + interval '30 seconds' END,
       m % 101 = 0,
       created, created
FROM (SELECT m, 1 + (m - 1) % {conversations} AS k,
             timestamp '2024-01-01' + make_interval(secs => m) AS created
      FROM generate_series(1, {messages}) m) s;
SELECT setval('vechat_messages_id_seq', {messages});

UPDATE vechat_conversations c SET last_message_id = l.id, last_message_at = l.created_at
FROM (SELECT DISTINCT ON (1 + (id - 1) % {conversations}) 1 + (id - 1) % {conversations} AS k,
             id, created_at
      FROM vechat_messages ORDER BY 1 + (id - 1) % {conversations}, id DESC) l
WHERE c.id = l.k;

INSERT INTO vechat_presence (user_id, user_type, status, last_seen)
SELECT 1000 + u, 'client', 'offline', timestamp '2024-06-01' FROM generate_series(1, 1000) u;
INSERT INTO vechat_user_settings (user_id, user_type, theme, show_online_status)
SELECT 1000 + u, 'client', 'dark', u % 10 <> 0 FROM generate_series(1, 1000) u;
"""

# The baseline: the same rows written once into a table shaped and indexed like the new
# vechat_messages (keys led by organisation, a foreign key to the conversations, full text).
BASELINE_SQL = """
CREATE TABLE baseline_conversations (organisation_id bigint, id bigint,
    PRIMARY KEY (organisation_id, id));
INSERT INTO baseline_conversations SELECT 1, k FROM generate_series(1, {conversations}) k;
CREATE TABLE baseline_messages (
    organisation_id bigint NOT NULL, id bigint NOT NULL, conversation_id bigint NOT NULL,
    sender_id bigint NOT NULL, sender_type varchar(20) NOT NULL,
    receiver_id bigint NOT NULL, receiver_type varchar(20) NOT NULL, message text,
    message_type varchar(20) NOT NULL, reply_to_message_id bigint, is_read boolean NOT NULL,
    read_at timestamptz, created_at timestamptz NOT NULL,
    search_vector tsvector GENERATED ALWAYS AS
        (to_tsvector('simple'::regconfig, coalesce(message, ''))) STORED,
    PRIMARY KEY (organisation_id, id),
    UNIQUE (organisation_id, conversation_id, id),
    FOREIGN KEY (organisation_id, conversation_id)
        REFERENCES baseline_conversations (organisation_id, id));
CREATE INDEX ON baseline_messages (organisation_id, sender_type, sender_id);
CREATE INDEX ON baseline_messages (organisation_id, receiver_type, receiver_id);
CREATE INDEX ON baseline_messages (organisation_id, conversation_id, created_at);
CREATE INDEX ON baseline_messages USING gin (search_vector);
"""
BASELINE_COPY_SQL = """
INSERT INTO baseline_messages (organisation_id, id, conversation_id, sender_id, sender_type,
    receiver_id, receiver_type, message, message_type, reply_to_message_id, is_read, read_at,
    created_at)
SELECT 1, id, 1 + (id - 1) % {conversations}, sender_id, sender_type, receiver_id, receiver_type,
       message, message_type, reply_to_message_id, coalesce(is_read, false),
       read_at AT TIME ZONE 'UTC', created_at AT TIME ZONE 'UTC'
FROM vechat_messages
"""


def run(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vechat_rls.cli", *argv], capture_output=True, text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"vechat-rls {' '.join(argv[:2])} failed:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--orphans", type=int, default=200, help="pairs without a conversation")
    args = parser.parse_args()
    sizes = {
        "messages": args.messages, "conversations": args.conversations,
        "orphans": args.orphans, "personnel": PERSONNEL,
    }
    with workdir("adopt") as work, private_cluster(work, durable=True) as pg:
        url = create_database(pg, "legacy")
        started = time.monotonic()
        legacy_schema().build(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(LOAD_SQL.format(**sizes).encode())
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size('legacy'))").fetchone()
        print(
            f"legacy database: {args.messages:,} messages, {args.conversations:,} pairs "
            f"({args.orphans} without a conversation row), 1,000 presence and settings rows; "
            f"{size[0] if size else '?'}, built in {time.monotonic() - started:.1f} s"
        )

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BASELINE_SQL.format(**sizes).encode())
            conn.execute("CHECKPOINT")
            started = time.monotonic()
            conn.execute(BASELINE_COPY_SQL.format(**sizes).encode())
            baseline = time.monotonic() - started
            conn.execute("DROP TABLE baseline_messages, baseline_conversations")
            conn.execute("CHECKPOINT")
        print(f"baseline: the messages copied once into a message-shaped table: {baseline:.1f} s")

        adopt_s, out = run(["db", "migrate", "--database-url", url])
        print(f"\n$ vechat-rls db migrate   ({adopt_s:.1f} s for the whole command)")
        print(out.rstrip())
        locked = re.search(r"adopted as organisation \d+ in ([\d.]+) s", out)
        verify_s, verify = run(["db", "verify", "--database-url", url])
        rollback_s, back = run(["db", "rollback", "--database-url", url, "--to", "0"])
        print(f"\n$ vechat-rls db rollback --to 0   ({rollback_s:.1f} s)")
        print(back.rstrip())
        print()
        print(f"adoption: {adopt_s:.1f} s for the command (target: under 120 s)")
        if locked:
            print(
                "tables locked (ACCESS EXCLUSIVE): vechat_conversations, vechat_messages, "
                f"vechat_presence, vechat_user_settings, for {float(locked[1]):.1f} s"
            )
        print(f"adoption / baseline copy: {adopt_s / baseline:.2f}")
        print(f"db verify after adoption: {verify_s:.1f} s, "
              f"{verify.splitlines()[-1] if verify else ''}")
        print(f"rollback: {rollback_s:.1f} s")


if __name__ == "__main__":
    main()
