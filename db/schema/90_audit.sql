-- db/schema/90_audit.sql — schema vechat_audit: read-only views and findings() an auditor runs in psql
--
-- Everything here reads the system catalogs only, never tenant rows, so the views are
-- security_invoker and work for any role granted vechat_auditor (db/policies/90_audit.sql).
-- "Tenant table" means a table public.vechat_*: the contract says every one of them holds tenant
-- data and has row-level security forced. "vechat object" means a tenant table, anything in the
-- schemas vechat and vechat_audit, or a public function named vechat_*; objects that belong to an
-- extension (unaccent) are not ours and are left out.

CREATE SCHEMA IF NOT EXISTS vechat_audit;
COMMENT ON SCHEMA vechat_audit IS
    'Read-only views and vechat_audit.findings() for auditors (role vechat_auditor): which tables have row-level security, which roles bypass it, who may do what.';
