-- db/migrations/0001_foundation.down.sql — removes everything 0001 created (roles and the ledger stay)

DROP SCHEMA IF EXISTS vechat_audit CASCADE;
DROP VIEW IF EXISTS vechat.presence_view;

DROP TABLE IF EXISTS
    public.vechat_rate_limits,
    public.vechat_events,
    public.vechat_event_cursors,
    public.vechat_message_edits,
    public.vechat_conversations,
    public.vechat_messages,
    public.vechat_attachments,
    public.vechat_presence_connections,
    public.vechat_presence,
    public.vechat_user_settings,
    public.vechat_contacts
    CASCADE;

DROP FUNCTION IF EXISTS
    vechat.prune_events(integer),
    vechat.prune_own_events(integer),
    vechat.sweep_leases(),
    vechat.set_leases(text, integer, jsonb),
    vechat.read_events(jsonb, integer),
    vechat.recount_unread(bigint, bigint),
    vechat.messages_after_update(),
    vechat.messages_after_insert(),
    vechat.events_after_insert(),
    vechat.emit(bigint, bigint, text, text, bigint, bigint, jsonb),
    vechat.user_settings_before_update(),
    vechat.user_settings_after_write(),
    vechat.messages_guard(),
    vechat.conversations_guard(),
    vechat.conversations_after_update(),
    vechat.contacts_before_write(),
    vechat.current_role_name(),
    vechat.current_user_type(),
    vechat.current_user_id(),
    vechat.current_organisation_id();

DROP EXTENSION IF EXISTS unaccent;

REVOKE ALL ON SCHEMA vechat FROM vechat_app, vechat_auditor;
COMMENT ON SCHEMA vechat IS NULL;
