-- db/functions/00_context.sql — the tenant-context functions every policy calls

-- The API sets these per transaction with set_config(name, value, true). A setting that was never
-- set reads as NULL (missing_ok) and one that was set and then reset reads as '' -- both mean
-- "no tenant", so every function maps '' to NULL before casting ('' :: bigint would raise).

CREATE OR REPLACE FUNCTION vechat.current_organisation_id() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('vechat.organisation_id', true), '')::bigint;
COMMENT ON FUNCTION vechat.current_organisation_id() IS
    'Tenant of the current transaction (setting vechat.organisation_id), NULL when unset: every policy compares organisation_id with it, so no tenant means no rows.';

CREATE OR REPLACE FUNCTION vechat.current_user_id() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('vechat.user_id', true), '')::bigint;
COMMENT ON FUNCTION vechat.current_user_id() IS
    'User id of the current transaction (setting vechat.user_id), NULL when unset.';

CREATE OR REPLACE FUNCTION vechat.current_user_type() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('vechat.user_type', true), '');
COMMENT ON FUNCTION vechat.current_user_type() IS
    'User type of the current transaction (setting vechat.user_type: personnel or client), NULL when unset.';

CREATE OR REPLACE FUNCTION vechat.current_role_name() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN NULLIF(pg_catalog.current_setting('vechat.role', true), '');
COMMENT ON FUNCTION vechat.current_role_name() IS
    'Application role from the verified token (setting vechat.role, e.g. admin), NULL when unset. Not a database role.';
