-- db/policies/02_context.sql — who may see the signed contexts, the keys and the id counters; idempotent
--
-- Only vechat_owner (through vechat.enter, vechat.act_as and vechat.assign_id) writes these tables.
-- vechat_app and auditors read their own backend's current context through vechat.context, and
-- nothing else: another backend's row would say which organisations are active right now.

REVOKE ALL ON vechat.context_keys, vechat.id_sequences, vechat.session_contexts FROM PUBLIC;
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

-- Storage, not access: at most ~9 backends' rows share a page (updates keep using the reserved
-- space, HOT, and a page is pruned as soon as it is 10 % full). With many connections the table
-- then spans several pages and the planner reads the context by its tuple id (vechat.context, a
-- TID scan) instead of scanning every backend's row at each of a statement's context reads;
-- with a few connections it is one small page either way. Measured: docs/performance.md.
ALTER TABLE vechat.session_contexts SET (fillfactor = 10);
