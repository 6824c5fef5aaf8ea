"""A normalised snapshot of every vechat object in a catalog, for drift and round-trip tests.

Names and definitions only (no OIDs), sorted, so two databases built differently compare equal when
their schemas are the same. The migration ledger (vechat.schema_*) is left out: it is bookkeeping.
"""

from __future__ import annotations

from typing import Any

import psycopg

# Relations that are ours: public.vechat_*, and everything in vechat / vechat_audit but the ledger
# and the organisations' id sequences (vechat.ids_*: made by the first insert of an organisation,
# data rather than schema, like the rows of vechat.id_sequences that name them).
_REL_SCOPE = r"""
    ((n.nspname = 'public' AND c.relname LIKE 'vechat\_%')
     OR (n.nspname IN ('vechat', 'vechat_audit') AND c.relname NOT LIKE 'schema\_%'
         AND NOT (n.nspname = 'vechat' AND c.relkind = 'S' AND c.relname LIKE 'ids\_%')))
"""
_FUNC_SCOPE = r"""
    (n.nspname IN ('vechat', 'vechat_audit')
     OR (n.nspname = 'public' AND p.proname LIKE 'vechat\_%'))
"""

SECTIONS: dict[str, str] = {
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text,
               obj_description(n.oid, 'pg_namespace')
        FROM pg_namespace n WHERE n.nspname IN ('vechat', 'vechat_audit')
    """,
    "extensions": """
        SELECT e.extname, n.nspname, pg_get_userbyid(e.extowner)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname <> 'plpgsql'
    """,
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),
               c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text,
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
               obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {_REL_SCOPE}
    """,
    "columns": f"""
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attacl::text, col_description(c.oid, a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {_REL_SCOPE}
    """,
    "constraints": f"""
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid),
               obj_description(k.oid, 'pg_constraint')
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_REL_SCOPE}
    """,
    "indexes": f"""
        SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_REL_SCOPE}
    """,
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check,
               obj_description(p.oid, 'pg_policy')
        FROM pg_policies
        JOIN pg_policy p ON p.polname = pg_policies.policyname
                        AND p.polrelid = format('%I.%I', schemaname, tablename)::regclass
        WHERE schemaname IN ('public', 'vechat', 'vechat_audit')
    """,
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_function_result(p.oid), md5(p.prosrc), p.prokind, p.prosecdef,
               p.provolatile, p.proconfig::text, pg_get_userbyid(p.proowner), p.proacl::text,
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_FUNC_SCOPE}
    """,
    "triggers": f"""
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled,
               obj_description(t.oid, 'pg_trigger')
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {_REL_SCOPE}
    """,
    "grants": f"""
        SELECT n.nspname, c.relname, pg_get_userbyid(a.grantor),
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               a.privilege_type, a.is_grantable
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace,
        LATERAL aclexplode(c.relacl) a
        WHERE {_REL_SCOPE}
    """,
    "types": """
        SELECT n.nspname, t.typname, t.typtype,
               array(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
                     ORDER BY e.enumsortorder)::text
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname IN ('vechat', 'vechat_audit') AND t.typtype IN ('e', 'd')
    """,
}

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(url: str) -> Snapshot:
    """Every section's rows, sorted (a fixed search_path keeps deparsed expressions comparable)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path = public")
        return {
            name: sorted(conn.execute(query.encode()).fetchall(), key=repr)
            for name, query in SECTIONS.items()
        }


def differences(left: Snapshot, right: Snapshot) -> list[str]:
    """Readable lines naming every row that is in one snapshot and not the other."""
    lines = []
    for section in SECTIONS:
        a, b = set(left.get(section, [])), set(right.get(section, []))
        lines += [f"{section}: only left:  {row}" for row in sorted(a - b, key=repr)]
        lines += [f"{section}: only right: {row}" for row in sorted(b - a, key=repr)]
    return lines
