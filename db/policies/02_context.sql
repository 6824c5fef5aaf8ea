-- db/policies/02_context.sql — who may see the signed contexts, the keys and the id counters; idempotent
--
-- Only vechat_owner (through vechat.enter, vechat.act_as and vechat.assign_id) writes these tables.
-- vechat_app and auditors read their own backend's current context through vechat.context, and
-- nothing else: another backend's row would say which organisations are active right now.

REVOKE ALL ON vechat.context_keys, vechat.id_counters, vechat.session_contexts FROM PUBLIC;
GRANT SELECT ON vechat.session_contexts TO vechat_app, vechat_auditor;

-- Not forced: the owner writes every backend's row (vechat.enter); what it reads is its own
-- backend's, by vechat.context's condition.
ALTER TABLE vechat.session_contexts ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS session_contexts_select_own ON vechat.session_contexts;
CREATE POLICY session_contexts_select_own ON vechat.session_contexts
    FOR SELECT
    USING (pid = pg_catalog.pg_backend_pid() AND xact = pg_catalog.transaction_timestamp());
COMMENT ON POLICY session_contexts_select_own ON vechat.session_contexts IS
    'A backend sees only its own context, and only during the transaction that entered it.';
