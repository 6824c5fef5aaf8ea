"""How a value travels between a legacy column and the new column of the same name, both ways."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from vechat_rls.migrate.legacy.shape import (
    Column,
    Table,
    new_columns,
    qualified,
)

GENERATED_SQL = """
SELECT attname FROM pg_catalog.pg_attribute
WHERE attrelid = %s::regclass AND attgenerated <> '' AND attnum > 0 AND NOT attisdropped
"""


def forward(source: Column, target: Column, timezone: str) -> sql.Composable:
    """The legacy value as the new column takes it (assignment casts do the rest, loudly)."""
    value: sql.Composable = sql.SQL("s.{}").format(sql.Identifier(source.name))
    if target.type == "timestamp with time zone" and source.type == "timestamp without time zone":
        value = sql.SQL("({} AT TIME ZONE {})").format(value, sql.Literal(timezone))
    elif target.type == "jsonb" and source.type != "jsonb":
        value = sql.SQL("pg_temp.vechat_jsonb({}::text)").format(value)
        if source.type != "json":  # free text that is not JSON is kept as a JSON string
            value = sql.SQL("coalesce({}, to_jsonb(s.{}::text))").format(
                value, sql.Identifier(source.name)
            )
    if target.not_null and not source.not_null and target.default is not None:
        value = sql.SQL("coalesce({}, {})").format(value, sql.SQL(target.default))
    return value


def backward(source: Column, target: Column, timezone: str, alias: str = "n") -> sql.Composable:
    """The new value as the legacy column takes it."""
    value: sql.Composable = sql.SQL("{}.{}").format(
        sql.Identifier(alias), sql.Identifier(source.name)
    )
    if source.type == "timestamp with time zone" and target.type == "timestamp without time zone":
        return sql.SQL("({} AT TIME ZONE {})").format(value, sql.Literal(timezone))
    if source.type == "jsonb" and target.category == "S":
        return sql.SQL(
            "CASE jsonb_typeof({0}) WHEN 'string' THEN {0} #>> '{{}}' ELSE {0}::text END"
        ).format(value)
    if target.category not in ("S", "N") or source.type == "jsonb":
        return sql.SQL("{}::{}").format(value, sql.SQL(target.type))
    return value


def copy_columns(
    conn: psycopg.Connection[Any], table: Table, timezone: str
) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """Target columns and source expressions for the columns the two tables share."""
    new = new_columns(conn, table.name)
    generated = {r[0] for r in conn.execute(GENERATED_SQL, (f"public.{table.name}",))}
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name, column in table.columns.items():
        if name == "organisation_id" or name not in new or name in generated:
            continue
        names.append(sql.Identifier(name))
        values.append(forward(column, new[name], timezone))
    return names, values


def organisation_value(table: Table, organisation: int) -> sql.Composable:
    if table.has_organisation:
        return sql.SQL("coalesce(s.organisation_id::bigint, {})").format(sql.Literal(organisation))
    return sql.Literal(organisation)


def sync_identity(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({name}, 'id'), coalesce(max(id), 0) + 1, false) "
            "FROM {table}"
        ).format(name=sql.Literal(f"public.{table}"), table=qualified("public", table))
    )


# Written out rather than composed: the four normalised columns of each legacy message's pair.
