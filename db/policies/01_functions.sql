-- db/policies/01_functions.sql — who may call the helper functions; idempotent

-- Functions are executable by PUBLIC by default; ours are for the application and its triggers.
REVOKE ALL ON SCHEMA vechat FROM PUBLIC;
GRANT USAGE ON SCHEMA vechat TO vechat_app, vechat_auditor;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA vechat FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA vechat TO vechat_app;
GRANT EXECUTE ON FUNCTION
    vechat.current_organisation_id(), vechat.current_user_id(), vechat.current_user_type(),
    vechat.current_role_name()
    TO vechat_auditor;

-- The signed context (db/functions/00_context.sql): vechat_app may enter a signed token and leave,
-- nothing else. A MAC, a doorbell or a context it could obtain without the key would forge one.
REVOKE EXECUTE ON FUNCTION
    vechat.context_mac(text, text), vechat.doorbell(text), vechat.act_as(bigint, bigint, text, text),
    vechat.add_context_key(text, bytea), vechat.retire_context_key(text), vechat.assign_id(),
    vechat.id_sequence(bigint, text)
    FROM vechat_app;
GRANT SELECT ON vechat.context TO vechat_app, vechat_auditor;
-- An auditor checks what a user sees (docs/auditing.md, step 6) by acting as them; this reads
-- tenant rows only while the DBA has also granted the auditor vechat_app, for the audit.
GRANT EXECUTE ON FUNCTION vechat.act_as(bigint, bigint, text, text) TO vechat_auditor;

-- The event log is written only by the message triggers (SECURITY DEFINER, as vechat_owner).
REVOKE EXECUTE ON FUNCTION vechat.emit(bigint, bigint, text, text, bigint, bigint, jsonb) FROM vechat_app;
-- vechat.prune_events is the DBA's, run as a superuser: the application has no use for it.
REVOKE EXECUTE ON FUNCTION vechat.prune_events(integer) FROM vechat_app;

-- Views in schema vechat are security_invoker: the caller's own row-level security applies.
GRANT SELECT ON vechat.presence_view TO vechat_app;
