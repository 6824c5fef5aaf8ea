"""`db rollback` to before adoption, and what `db verify` and `db status` say about an adoption."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from vechat_rls.migrate.errors import MigrationError
from vechat_rls.migrate.layout import Migration
from vechat_rls.migrate.legacy.columns import (
    backward,
)
from vechat_rls.migrate.legacy.shape import (
    GUIDE_UNIQUE_KEYS,
    HOLDING,
    TABLES,
    UNIQUE_KEYS_SQL,
    Say,
    Steps,
    Table,
    as_dba,
    as_owner,
    count_rows,
    inspect,
    moving_rows,
    new_columns,
    qualified,
    rowcount,
)
from vechat_rls.migrate.steps import (
    LOCK_TIMEOUT,
    act_as_owner,
    run_down_file,
)
from vechat_rls.migrate.targets import Target

# --- the way back: db rollback to before adoption ------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    """What the ledger says about the adoption of this database."""

    organisation_id: int
    legacy_timezone: str
    adopted_at: Any
    adopted_by: str
    seconds: float
    conversations_created: int
    presence_created: int
    counters_corrected: int
    tables: dict[str, Any]
    triggers: list[dict[str, str]]


_READ_ADOPTION_SQL = """
SELECT organisation_id, legacy_timezone, adopted_at, adopted_by, seconds::float8,
       conversations_created, presence_created, counters_corrected, tables, triggers
FROM vechat.schema_legacy_adoption
"""


def read_adoption(conn: psycopg.Connection[Any]) -> Adoption | None:
    row = conn.execute("SELECT to_regclass('vechat.schema_legacy_adoption')").fetchone()
    if not row or row[0] is None:
        return None
    found = conn.execute(_READ_ADOPTION_SQL).fetchone()
    return Adoption(*found) if found else None


_TENANT_TABLES_SQL = r"""
SELECT c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'vechat\_%'
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid
              AND a.attname = 'organisation_id' AND NOT a.attisdropped)
ORDER BY 1
"""


def _organisations_held(conn: psycopg.Connection[Any]) -> dict[int, list[str]]:
    """Every organisation with rows in a public.vechat_* table, and those tables. Row-level
    security is switched off on them for the rest of the caller's transaction (which either
    drops them or is rolled back), so that a DBA who is not a superuser counts every row."""
    tables = [r[0] for r in conn.execute(_TENANT_TABLES_SQL).fetchall()]
    as_owner(conn)
    for table in tables:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(qualified("public", table))
        )
    as_dba(conn)
    held: dict[int, list[str]] = {}
    for table in tables:
        for (organisation,) in conn.execute(
            sql.SQL("SELECT DISTINCT organisation_id FROM {}").format(qualified("public", table))
        ).fetchall():
            held.setdefault(int(organisation), []).append(table)
    as_dba(conn)
    return held


def _refuse_many(held: dict[int, list[str]]) -> None:
    if len(held) > 1:
        detail = "; ".join(
            f"organisation {o}: {', '.join(tables)}" for o, tables in sorted(held.items())
        )
        raise MigrationError(
            f"cannot roll back to the legacy VeChat schema: the database holds rows of "
            f"{len(held)} organisations ({detail}) and the legacy tables have no organisation_id "
            "to tell them apart; nothing was changed"
        )


# A message the legacy shape cannot express as deleted for everyone, or hidden because its
# participant deleted the whole conversation "for me", becomes hidden for that participant with
# the legacy flags (which mean exactly "delete for me").
_HIDDEN_FOR_SENDER = """(n.is_deleted_by_sender OR n.deleted_at IS NOT NULL
    OR coalesce((c.participant1_id, c.participant1_type) = (n.sender_id, n.sender_type)
                AND n.id <= c.hidden_through_message_id_participant1, false)
    OR coalesce((c.participant2_id, c.participant2_type) = (n.sender_id, n.sender_type)
                AND n.id <= c.hidden_through_message_id_participant2, false))"""
_HIDDEN_FOR_RECEIVER = _HIDDEN_FOR_SENDER.replace(
    "is_deleted_by_sender", "is_deleted_by_receiver"
).replace("(n.sender_id, n.sender_type)", "(n.receiver_id, n.receiver_type)")


def _copy_back(conn: psycopg.Connection[Any], shell: Table, timezone: str) -> int:
    new = new_columns(conn, shell.name)
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name, column in shell.columns.items():
        if name not in new:
            continue
        names.append(sql.Identifier(name))
        if shell.name == "vechat_messages" and name == "is_deleted_by_sender":
            values.append(sql.SQL(_HIDDEN_FOR_SENDER))
        elif shell.name == "vechat_messages" and name == "is_deleted_by_receiver":
            values.append(sql.SQL(_HIDDEN_FOR_RECEIVER))
        else:
            values.append(backward(new[name], column, timezone))
    join = sql.SQL("")
    if shell.name == "vechat_messages":
        join = sql.SQL(
            " LEFT JOIN public.vechat_conversations c"
            " ON c.organisation_id = n.organisation_id AND c.id = n.conversation_id"
        )
    order = sql.SQL(" ORDER BY n.id") if "id" in new else sql.SQL("")
    cur = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} n{}{}").format(
            qualified(HOLDING, shell.name),
            sql.SQL(", ").join(names),
            sql.SQL(", ").join(values),
            qualified("public", shell.name),
            join,
            order,
        )
    )
    return rowcount(cur)


# The sequences behind the legacy tables' serial columns (owned or merely used by a default).
_SERIAL_SEQUENCES_SQL = """
SELECT a.attname, d.refobjid::regclass::text
FROM pg_catalog.pg_attrdef ad
JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
WHERE ad.adrelid = %s::regclass
"""


def _sync_serials(conn: psycopg.Connection[Any], table: str) -> None:
    for column, sequence in conn.execute(_SERIAL_SEQUENCES_SQL, (f"public.{table}",)).fetchall():
        conn.execute(
            sql.SQL("SELECT setval({}, coalesce(max({}), 0) + 1, false) FROM {}").format(
                sql.Literal(sequence), sql.Identifier(column), qualified("public", table)
            )
        )


def check_restorable(conn: psycopg.Connection[Any]) -> None:
    """Refuse, changing nothing, a rollback to the legacy shape that `restore` would refuse: run
    before the downs of later migrations, which would otherwise be committed first."""
    with conn.transaction(force_rollback=True):
        held = _organisations_held(conn)
    _refuse_many(held)


def restore_plan(
    conn: psycopg.Connection[Any], adoption: Adoption, migration: Migration, say: Say
) -> None:
    """`db rollback --dry-run` to before adoption: what would happen, or why it would refuse."""
    with conn.transaction(force_rollback=True):
        held = _organisations_held(conn)
        shells = inspect(conn, HOLDING)
        counts = {name: count_rows(conn, "public", name) for name in shells.names}
    _refuse_many(held)
    say(
        f"would roll back {migration.label}, adopted from the legacy VeChat tables on "
        f"{adoption.adopted_at:%Y-%m-%d %H:%M} as organisation {adoption.organisation_id}"
    )
    for name in shells.names:
        say(f"would copy {counts[name]} rows of public.{name} back into the legacy table")
    say(
        f"would drop everything {migration.label} created and move the legacy tables back to public"
    )
    for trigger in adoption.triggers:
        say(f"would restore trigger {trigger['name']} on {trigger['table']}")


def restore(
    conn: psycopg.Connection[Any],
    adoption: Adoption,
    migration: Migration,
    target: Target,
    say: Say,
) -> None:
    """Roll the adoption back in one transaction (module doc); refuse, changing nothing, if the
    database holds more than one organisation."""
    steps = Steps(say)
    timezone = adoption.legacy_timezone
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        with steps.step(f"locked {', '.join(TABLES)} (ACCESS EXCLUSIVE, until commit)"):
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(qualified("public", t) for t in TABLES)
                )
            )
        with steps.step("checked the organisations held") as notes:
            held = _organisations_held(conn)
            notes.append(", ".join(str(o) for o in sorted(held)) or "no rows")
        _refuse_many(held)
        shells = inspect(conn, HOLDING)
        missing = [n for n, t in adoption.tables.items() if t["present"] and n not in shells.tables]
        if missing:
            raise MigrationError(
                f"the legacy tables {', '.join(missing)} are missing from schema {HOLDING}: "
                "cannot restore the legacy shape; nothing was changed"
            )
        with steps.step("removed organisation_id from the legacy tables") as notes:
            for shell in shells.tables.values():
                if shell.has_organisation:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DROP COLUMN organisation_id").format(
                            qualified(HOLDING, shell.name)
                        )
                    )
                    notes.append(shell.name)
        shells = inspect(conn, HOLDING)
        with moving_rows(conn, ()):
            # Messages first: the legacy conversations' last_message_id references them.
            for name in (
                "vechat_messages",
                "vechat_conversations",
                "vechat_presence",
                "vechat_user_settings",
            ):
                copied = shells.tables.get(name)
                if copied is None:
                    continue
                with steps.step(f"copied public.{name} back") as notes:
                    notes.append(f"{_copy_back(conn, copied, timezone)} rows")
        with steps.step(f"dropped what {migration.label} created"):
            act_as_owner(conn, target)
            run_down_file(conn, migration, target)
            as_dba(conn)
        with steps.step("moved the legacy tables back to public") as notes:
            for name in shells.names:
                conn.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA public").format(qualified(HOLDING, name))
                )
                _sync_serials(conn, name)
            restored_functions: set[str] = set()
            for trigger in adoption.triggers:
                function = trigger["function"]
                if trigger["function_schema"] == "public" and function not in restored_functions:
                    moved = HOLDING + "." + function.removeprefix("public.")
                    conn.execute(
                        sql.SQL("ALTER FUNCTION {} SET SCHEMA public").format(sql.SQL(moved))
                    )
                    restored_functions.add(function)
                # The definition names the table and function as seen from public.
                conn.execute("SET LOCAL search_path = public")
                conn.execute(trigger["definition"].encode())
                notes.append(f"trigger {trigger['name']}")
            for name in shells.names:
                created = _guide_unique_key(conn, name)
                if created:
                    notes.append(created)
            conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(HOLDING)))
        conn.execute("DELETE FROM vechat.schema_legacy_adoption")
        conn.execute(
            "DELETE FROM vechat.schema_migrations WHERE version = %s", (migration.version,)
        )
        conn.execute("DELETE FROM vechat.schema_policy_files")
        conn.execute("DELETE FROM vechat.schema_function_files")
    say(f"back to the legacy VeChat schema in {steps.elapsed:.2f} s")


def _guide_unique_key(conn: psycopg.Connection[Any], table: str) -> str | None:
    """The old guide's pair/user unique index, when dropping organisation_id took the only one."""
    guide = GUIDE_UNIQUE_KEYS.get(table)
    if guide is None:
        return None
    name, columns = guide
    wanted = f"({', '.join(columns)})"
    # The primary key counts too: the older presence table is keyed by (user_id, user_type).
    keys = [
        r[0]
        for r in conn.execute(
            UNIQUE_KEYS_SQL.replace("AND NOT x.indisprimary", ""), (f"public.{table}",)
        ).fetchall()
    ]
    if any(k.endswith(f" {wanted}") for k in keys):
        return None
    conn.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(name),
            qualified("public", table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        )
    )
    return f"index {name}"


# --- what db verify and db status say about an adoption -----------------------------------------


def verify_report(conn: psycopg.Connection[Any]) -> tuple[bool, str, list[str]] | None:
    """`db verify`'s check of an adopted database: counts before and after (from the ledger),
    what adoption created, and the emptied legacy tables; None if the database was not adopted."""
    adoption = read_adoption(conn)
    if adoption is None:
        return None
    ok = True
    details = []
    created = {
        "vechat_conversations": (adoption.conversations_created, "conversations for orphan pairs"),
        "vechat_presence": (adoption.presence_created, "presence rows carrying privacy settings"),
    }
    for name in TABLES:
        entry = adoption.tables.get(name, {})
        added, why = created.get(name, (0, ""))
        before = entry.get("rows_before", 0) if entry.get("present") else None
        after = entry.get("rows_after", 0)
        expected = (before or 0) + added
        ok = ok and after == expected
        shown = "absent" if before is None else f"{before} rows"
        extra = f" (+{added} {why})" if added else ""
        mark = "" if after == expected else f"  MISMATCH: expected {expected}"
        details.append(f"{name}: {shown} before adoption, {after} after{extra}{mark}")
    details.append(f"unread counters corrected: {adoption.counters_corrected} conversations")
    for trigger in adoption.triggers:
        details.append(f"legacy trigger dropped (db rollback restores it): {trigger['name']}")
    shells = inspect(conn, HOLDING)
    full = [f"{t.name} ({t.rows} rows)" for t in shells.tables.values() if t.rows]
    ok = ok and not full
    details.append(
        f"schema {HOLDING}: {len(shells.tables)} legacy tables kept for db rollback, "
        + (f"NOT EMPTY: {', '.join(full)}" if full else "all empty")
    )
    title = (
        f"legacy adoption: {adoption.adopted_at:%Y-%m-%d %H:%M:%S%z} by {adoption.adopted_by} as "
        f"organisation {adoption.organisation_id} (naive timestamps read as "
        f"{adoption.legacy_timezone}), {adoption.seconds:.2f} s"
    )
    return ok, title, details


def status_note(conn: psycopg.Connection[Any]) -> str | None:
    adoption = read_adoption(conn)
    if adoption is None:
        return None
    return f"adopted from the legacy VeChat tables as organisation {adoption.organisation_id}"
