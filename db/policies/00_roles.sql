-- db/policies/00_roles.sql — the three cluster roles and what they may do in this database; idempotent
--
-- Run by the DBA (a superuser, or a database owner with CREATEROLE) before any migration.
-- vechat_owner owns every object and never logs in; vechat_app is what the API logs in as: it owns
-- nothing and cannot bypass row-level security; vechat_auditor is granted to people who inspect.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'vechat_owner') THEN
        CREATE ROLE vechat_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'vechat_app') THEN
        CREATE ROLE vechat_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'vechat_auditor') THEN
        CREATE ROLE vechat_auditor NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    -- Re-assert the attributes that keep isolation on, in case someone changed them by hand.
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        ALTER ROLE vechat_owner NOSUPERUSER NOBYPASSRLS;
        ALTER ROLE vechat_app NOSUPERUSER NOBYPASSRLS;
        ALTER ROLE vechat_auditor NOSUPERUSER NOBYPASSRLS;
    ELSIF NOT pg_catalog.pg_has_role(current_user, 'vechat_owner', 'MEMBER') THEN
        -- A non-superuser DBA must be able to SET ROLE vechat_owner to run migrations.
        EXECUTE pg_catalog.format('GRANT vechat_owner TO %I', current_user);
    END IF;
    -- vechat.enter() (SECURITY DEFINER, as vechat_owner) checks the start time of the backend it
    -- runs in, which pg_stat_activity shows only to roles with the privileges of the backend's
    -- login: vechat_app's sessions through this grant, which gives vechat_owner nothing over
    -- tenant rows it did not have; any login's (a DBA's psql, an audit) through pg_read_all_stats,
    -- which only a superuser may grant from PostgreSQL 16 on.
    IF NOT pg_catalog.pg_has_role('vechat_owner', 'vechat_app', 'USAGE') THEN
        GRANT vechat_app TO vechat_owner;
    END IF;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role('vechat_owner', 'pg_read_all_stats', 'USAGE') THEN
        GRANT pg_read_all_stats TO vechat_owner;
    END IF;
    EXECUTE pg_catalog.format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO vechat_owner',
                              pg_catalog.current_database());
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO vechat_app, vechat_auditor',
                              pg_catalog.current_database());
END
$roles$;

GRANT USAGE, CREATE ON SCHEMA public TO vechat_owner;
