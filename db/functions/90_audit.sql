-- db/functions/90_audit.sql — the auditor's views and findings

CREATE OR REPLACE VIEW vechat_audit.tables WITH (security_invoker = true) AS
SELECT n.nspname::text AS table_schema,
       c.relname::text AS table_name,
       pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       EXISTS (SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'organisation_id' AND NOT a.attisdropped)
           AS has_organisation_id,
       EXISTS (SELECT FROM pg_catalog.pg_policy p
               WHERE p.polrelid = c.oid AND NOT p.polpermissive
                 AND p.polname = c.relname || '_organisation_isolation')
           AS has_isolation_policy,
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
             WHERE p.polrelid = c.oid ORDER BY p.polname) AS policies
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'vechat\_%';
COMMENT ON VIEW vechat_audit.tables IS
    'Every tenant table (public.vechat_*): owner, row-level security enabled and forced, organisation_id present, the restrictive <table>_organisation_isolation policy present, and all its policies. Every row should read true, true, true, true.';

CREATE OR REPLACE VIEW vechat_audit.policies WITH (security_invoker = true) AS
SELECT n.nspname::text AS table_schema,
       c.relname::text AS table_name,
       p.polname::text AS policy_name,
       CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END AS permissive,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                     WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
       CASE WHEN p.polroles = '{0}'::oid[] THEN ARRAY['public']
            ELSE ARRAY(SELECT pg_catalog.pg_get_userbyid(r)::text
                       FROM pg_catalog.unnest(p.polroles) AS r ORDER BY 1) END AS roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expression,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expression,
       pg_catalog.obj_description(p.oid, 'pg_policy') AS description
FROM pg_catalog.pg_policy p
JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE (n.nspname = 'public' AND c.relname LIKE 'vechat\_%') OR n.nspname IN ('vechat', 'vechat_audit');
COMMENT ON VIEW vechat_audit.policies IS
    'Every row-level security policy on vechat tables: restrictive policies must all pass (the organisation rule), then at least one permissive policy for the command (the participant rules). using_expression filters rows read; check_expression checks rows written.';

CREATE OR REPLACE VIEW vechat_audit.objects WITH (security_invoker = true) AS
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END
           || ' ' || pg_catalog.format('%I.%I', n.nspname, c.relname) AS object,
       c.relowner AS owner_oid,
       pg_catalog.pg_get_userbyid(c.relowner)::text AS owner
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND ((n.nspname = 'public' AND c.relname LIKE 'vechat\_%') OR n.nspname IN ('vechat', 'vechat_audit'))
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, p.proowner, pg_catalog.pg_get_userbyid(p.proowner)::text
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname IN ('vechat', 'vechat_audit') OR (n.nspname = 'public' AND p.proname LIKE 'vechat\_%'))
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                    AND d.deptype = 'e')
UNION ALL
SELECT 'schema ' || pg_catalog.quote_ident(n.nspname), n.nspowner, pg_catalog.pg_get_userbyid(n.nspowner)::text
FROM pg_catalog.pg_namespace n
WHERE n.nspname IN ('vechat', 'vechat_audit');
COMMENT ON VIEW vechat_audit.objects IS
    'Every vechat object (tenant tables, sequences, views, functions, the schemas vechat and vechat_audit; extension objects left out) and its owner. All should be owned by vechat_owner, except the migration ledger (vechat.schema_*), which is the DBA''s.';

CREATE OR REPLACE VIEW vechat_audit.privileged_roles WITH (security_invoker = true) AS
SELECT r.rolname::text AS role_name,
       r.rolcanlogin AS can_login,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypass_rls,
       ARRAY(SELECT o.object FROM vechat_audit.objects o WHERE o.owner_oid = r.oid ORDER BY 1) AS owns,
       ARRAY(SELECT DISTINCT o.owner FROM vechat_audit.objects o
             WHERE o.owner_oid <> r.oid AND NOT r.rolsuper
               AND pg_catalog.pg_has_role(r.oid, o.owner_oid, 'MEMBER')
             ORDER BY 1) AS member_of_owner
FROM pg_catalog.pg_roles r
WHERE r.rolsuper OR r.rolbypassrls
   OR EXISTS (SELECT FROM vechat_audit.objects o
              WHERE o.owner_oid = r.oid OR pg_catalog.pg_has_role(r.oid, o.owner_oid, 'MEMBER'));
COMMENT ON VIEW vechat_audit.privileged_roles IS
    'Roles for which row-level security may not hold: superusers and BYPASSRLS roles skip it; owners of vechat objects (and their members, member_of_owner) can switch it off. vechat_app must never appear here.';

CREATE OR REPLACE VIEW vechat_audit.grants WITH (security_invoker = true) AS
WITH acl (object_type, object_name, owner, acl) AS (
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          WHEN 'S' THEN 'sequence' ELSE 'table' END,
           pg_catalog.format('%I.%I', n.nspname, c.relname),
           c.relowner,
           COALESCE(c.relacl, pg_catalog.acldefault(
               CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND ((n.nspname = 'public' AND c.relname LIKE 'vechat\_%')
           OR n.nspname IN ('vechat', 'vechat_audit'))
    UNION ALL
    SELECT 'column', pg_catalog.format('%I.%I.%I', n.nspname, c.relname, att.attname), c.relowner,
           att.attacl
    FROM pg_catalog.pg_attribute att
    JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE att.attacl IS NOT NULL AND NOT att.attisdropped
      AND ((n.nspname = 'public' AND c.relname LIKE 'vechat\_%')
           OR n.nspname IN ('vechat', 'vechat_audit'))
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, p.proowner,
           COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('vechat', 'vechat_audit')
       OR (n.nspname = 'public' AND p.proname LIKE 'vechat\_%')
    UNION ALL
    SELECT 'schema', pg_catalog.quote_ident(n.nspname), n.nspowner,
           COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname IN ('vechat', 'vechat_audit')
)
SELECT acl.object_type,
       acl.object_name,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END
           AS grantee,
       a.privilege_type AS privilege,
       a.is_grantable AS grantable,
       pg_catalog.pg_get_userbyid(a.grantor)::text AS grantor
FROM acl, LATERAL pg_catalog.aclexplode(acl.acl) AS a
WHERE a.grantee <> acl.owner;
COMMENT ON VIEW vechat_audit.grants IS
    'Privileges on vechat tables, columns, sequences, views, functions and schemas granted to roles other than the owner (PUBLIC = everyone). vechat_app should hold DML on tenant tables and nothing on the migration ledger.';

-- One row per problem; an empty result is a clean audit. Severity: critical = isolation is off for
-- some role right now; high = isolation holds only as long as nobody uses a door left open.
-- "App role": vechat_app, and any role that holds a DML grant on a tenant table (other than the
-- table's owner), and every role that is a member of one of those; of these, the login roles are
-- the ones a connection can be made as.
-- Whether a transaction-local setting alone, as any statement of the application may set it, makes
-- the transaction act for an organisation (as it did before contexts were signed): tried on the
-- spot, and every setting put back as it was.
CREATE OR REPLACE FUNCTION vechat_audit.unsigned_context_accepted() RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    v_names  text[] := ARRAY['vechat.organisation_id', 'vechat.user_id', 'vechat.user_type'];
    v_saved  text[] := ARRAY[pg_catalog.current_setting('vechat.organisation_id', true),
                             pg_catalog.current_setting('vechat.user_id', true),
                             pg_catalog.current_setting('vechat.user_type', true)];
    v_before bigint := vechat.current_organisation_id();
    v_probe  bigint := coalesce(v_before, 0) + 1;
    v_after  bigint;
BEGIN
    PERFORM pg_catalog.set_config('vechat.organisation_id', v_probe::text, true),
            pg_catalog.set_config('vechat.user_id', '1', true),
            pg_catalog.set_config('vechat.user_type', 'personnel', true);
    v_after := vechat.current_organisation_id();
    FOR i IN 1..3 LOOP
        PERFORM pg_catalog.set_config(v_names[i], coalesce(v_saved[i], ''), true);
    END LOOP;
    RETURN v_after IS NOT DISTINCT FROM v_probe;
END
$$;
COMMENT ON FUNCTION vechat_audit.unsigned_context_accepted() IS
    'True when set_config(''vechat.organisation_id'', …) alone changes the tenant the policies see: contexts are not signed. Puts every setting back.';

CREATE OR REPLACE FUNCTION vechat_audit.findings()
    RETURNS TABLE (severity text, object text, problem text)
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
WITH RECURSIVE
tenant_tables AS (
    SELECT c.oid, c.relowner, c.relrowsecurity, c.relforcerowsecurity, c.relacl,
           c.relname::text AS relname,
           pg_catalog.format('table public.%I', c.relname) AS object
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'vechat\_%'
),
isolation_policies AS (
    SELECT t.oid AS table_oid, p.polpermissive, p.polcmd, p.polroles,
           pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual
    FROM tenant_tables t
    JOIN pg_catalog.pg_policy p ON p.polrelid = t.oid AND p.polname = t.relname || '_organisation_isolation'
),
dml_grants AS (
    SELECT t.oid AS table_oid, a.grantee, a.privilege_type
    FROM tenant_tables t, LATERAL pg_catalog.aclexplode(t.relacl) AS a
    UNION ALL
    SELECT t.oid, a.grantee, a.privilege_type
    FROM tenant_tables t
    JOIN pg_catalog.pg_attribute att ON att.attrelid = t.oid AND att.attacl IS NOT NULL,
    LATERAL pg_catalog.aclexplode(att.attacl) AS a
),
app_roles (roleid) AS (
    SELECT g.grantee FROM dml_grants g JOIN tenant_tables t ON t.oid = g.table_oid
    WHERE g.grantee NOT IN (0, t.relowner) AND g.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    UNION
    SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = 'vechat_app'
    UNION
    -- vechat_owner holds vechat_app to read backend start times (vechat.enter, policies/00_roles.sql):
    -- that makes neither it nor its members (the DBA) the application.
    SELECT m.member FROM pg_catalog.pg_auth_members m JOIN app_roles a ON m.roleid = a.roleid
    WHERE m.member IS DISTINCT FROM pg_catalog.to_regrole('vechat_owner')::oid
),
login_app_roles AS (
    SELECT r.oid, r.rolname::text AS rolname, r.rolsuper, r.rolbypassrls,
           pg_catalog.format('role %I', r.rolname) AS object
    FROM pg_catalog.pg_roles r
    WHERE r.oid IN (SELECT roleid FROM app_roles) AND (r.rolcanlogin OR r.rolname = 'vechat_app')
),
vechat_functions AS (
    SELECT p.oid, p.prosecdef, p.proconfig, 'function ' || p.oid::regprocedure::text AS object
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE (n.nspname IN ('vechat', 'vechat_audit') OR (n.nspname = 'public' AND p.proname LIKE 'vechat\_%'))
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                        AND d.deptype = 'e')
),
found (severity, object, problem) AS (
    SELECT 'critical', t.object,
           'row-level security is not enabled: every role with a grant on it sees every organisation''s rows'
    FROM tenant_tables t WHERE NOT t.relrowsecurity
    UNION ALL
    SELECT 'high', t.object,
           'row-level security is not forced: its owner (and every member of the owner role) is not subject to the policies'
    FROM tenant_tables t WHERE t.relrowsecurity AND NOT t.relforcerowsecurity
    UNION ALL
    SELECT 'critical', t.object, 'has no organisation_id column: its rows belong to no organisation'
    FROM tenant_tables t
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = t.oid AND a.attname = 'organisation_id' AND NOT a.attisdropped)
    UNION ALL
    SELECT 'high', t.object, 'organisation_id is nullable: a row without an organisation is invisible to every tenant and owned by none'
    FROM tenant_tables t
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attname = 'organisation_id' AND NOT a.attisdropped
    WHERE NOT a.attnotnull
    UNION ALL
    SELECT 'critical', t.object,
           pg_catalog.format('has no restrictive policy %I: nothing enforces the organisation rule', t.relname || '_organisation_isolation')
    FROM tenant_tables t
    WHERE NOT EXISTS (SELECT FROM isolation_policies i WHERE i.table_oid = t.oid AND NOT i.polpermissive)
    UNION ALL
    SELECT 'critical', t.object,
           pg_catalog.format('policy %I is PERMISSIVE: it widens access instead of restricting it', t.relname || '_organisation_isolation')
    FROM tenant_tables t JOIN isolation_policies i ON i.table_oid = t.oid WHERE i.polpermissive
    UNION ALL
    SELECT 'high', t.object,
           pg_catalog.format('policy %I does not apply to every command (FOR ALL)', t.relname || '_organisation_isolation')
    FROM tenant_tables t JOIN isolation_policies i ON i.table_oid = t.oid
    WHERE NOT i.polpermissive AND i.polcmd <> '*'
    UNION ALL
    SELECT 'high', t.object,
           pg_catalog.format('policy %I applies neither to PUBLIC nor to vechat_app', t.relname || '_organisation_isolation')
    FROM tenant_tables t JOIN isolation_policies i ON i.table_oid = t.oid
    WHERE NOT i.polpermissive AND NOT i.polroles && ARRAY[0::oid, pg_catalog.to_regrole('vechat_app')::oid]
    UNION ALL
    SELECT 'high', t.object,
           pg_catalog.format('policy %I does not compare organisation_id with the signed context (vechat.context)', t.relname || '_organisation_isolation')
    FROM tenant_tables t JOIN isolation_policies i ON i.table_oid = t.oid
    WHERE NOT i.polpermissive
      AND COALESCE(i.qual, '') NOT LIKE '%organisation_id = ( SELECT ctx.organisation_id%FROM vechat.context ctx%'
    UNION ALL
    SELECT DISTINCT 'critical', t.object,
           pg_catalog.format('policy %I reads a setting (current_setting): any statement running as the application can change it', p.polname)
    FROM tenant_tables t
    JOIN pg_catalog.pg_policy p ON p.polrelid = t.oid
    WHERE COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || ' '
          || COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '') LIKE '%current\_setting%'
    UNION ALL
    SELECT 'critical', 'view vechat.context',
           'unsigned contexts are accepted: a plain set_config() by the application role makes a transaction act for an organisation'
    WHERE vechat_audit.unsigned_context_accepted()
    UNION ALL
    SELECT DISTINCT 'high', t.object, pg_catalog.format('PUBLIC (every role) is granted %s on it', g.privilege_type)
    FROM tenant_tables t JOIN dml_grants g ON g.table_oid = t.oid AND g.grantee = 0
    UNION ALL
    SELECT 'critical', r.object,
           'is a superuser and may log in with access to tenant tables: row-level security never applies to a superuser'
    FROM login_app_roles r WHERE r.rolsuper
    UNION ALL
    SELECT 'critical', r.object,
           'has BYPASSRLS and may log in with access to tenant tables: row-level security does not apply to it'
    FROM login_app_roles r WHERE r.rolbypassrls
    UNION ALL
    SELECT 'critical', o.object,
           pg_catalog.format('is owned by %I, a role that may log in with access to tenant tables: an owner can switch row-level security off', r.rolname)
    FROM login_app_roles r JOIN vechat_audit.objects o ON o.owner_oid = r.oid
    UNION ALL
    SELECT DISTINCT 'critical', r.object,
           pg_catalog.format('is a member of %I, which owns vechat objects: it can act as their owner and switch row-level security off', o.owner)
    FROM login_app_roles r JOIN vechat_audit.objects o
         ON o.owner_oid <> r.oid AND NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, o.owner_oid, 'MEMBER')
    UNION ALL
    SELECT DISTINCT 'high', pg_catalog.format('table %I.%I', n.nspname, c.relname),
           pg_catalog.format('%I may use it, but it has no row-level security (only tenant tables with forced RLS are for the application)', r.rolname)
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN login_app_roles r
    WHERE n.nspname IN ('vechat', 'vechat_audit') AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
      AND pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
      AND NOT r.rolsuper
    UNION ALL
    SELECT 'high', f.object, 'is SECURITY DEFINER without a pinned search_path: a caller can redirect the names it uses'
    FROM vechat_functions f
    WHERE f.prosecdef
      AND NOT EXISTS (SELECT FROM pg_catalog.unnest(f.proconfig) AS s WHERE s LIKE 'search\_path=%')
    UNION ALL
    SELECT 'critical', pg_catalog.format('view %I.%I', n.nspname, c.relname),
           pg_catalog.format('is not security_invoker and its owner %I bypasses row-level security: it shows every organisation''s rows', pg_catalog.pg_get_userbyid(c.relowner))
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_roles owner ON owner.oid = c.relowner
    WHERE c.relkind IN ('v', 'm')
      AND ((n.nspname = 'public' AND c.relname LIKE 'vechat\_%') OR n.nspname IN ('vechat', 'vechat_audit'))
      AND (owner.rolsuper OR owner.rolbypassrls)
      AND NOT EXISTS (SELECT FROM pg_catalog.unnest(c.reloptions) AS o
                      WHERE pg_catalog.lower(o) IN ('security_invoker=true', 'security_invoker=on',
                                                    'security_invoker=1', 'security_invoker=yes'))
)
SELECT f.severity, f.object, f.problem
FROM found f
ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 ELSE 2 END, f.object, f.problem
$$;
COMMENT ON FUNCTION vechat_audit.findings() IS
    'One row (severity, object, problem) per isolation problem: tenant tables without forced row-level security, organisation_id or the restrictive isolation policy; policies or context functions that trust a plain setting (unsigned contexts accepted); app login roles that are superuser, BYPASSRLS or owners; SECURITY DEFINER functions without a pinned search_path. Empty = clean.';
