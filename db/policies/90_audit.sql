-- db/policies/90_audit.sql — what auditors may read: the vechat_audit views and findings(); idempotent
--
-- The views read only the system catalogs, which every role may read anyway: the grants keep the
-- audit schema out of the application's way rather than hide anything. vechat_app gets nothing.

REVOKE ALL ON SCHEMA vechat_audit FROM PUBLIC;
GRANT USAGE ON SCHEMA vechat_audit TO vechat_auditor;

REVOKE ALL ON ALL TABLES IN SCHEMA vechat_audit FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA vechat_audit TO vechat_auditor;

-- Functions are executable by PUBLIC unless revoked.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA vechat_audit FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA vechat_audit TO vechat_auditor;
