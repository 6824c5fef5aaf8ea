-- db/policies/vechat_events.sql — a user reads only their own event log

ALTER TABLE public.vechat_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_events FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_events FROM PUBLIC;

DROP POLICY IF EXISTS vechat_events_organisation_isolation ON public.vechat_events;
CREATE POLICY vechat_events_organisation_isolation ON public.vechat_events
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_events_organisation_isolation ON public.vechat_events IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT ON public.vechat_events TO vechat_app;
-- Written only by the message triggers (SECURITY DEFINER, as vechat_owner); these policies bind
-- that writer to the transaction's tenant and user all the same (row-level security is forced).
REVOKE INSERT, UPDATE, DELETE ON public.vechat_events FROM vechat_app;

DROP POLICY IF EXISTS vechat_events_select_recipient ON public.vechat_events;
CREATE POLICY vechat_events_select_recipient ON public.vechat_events
    FOR SELECT
    USING ((recipient_id, recipient_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_events_select_recipient ON public.vechat_events IS
    'A user reads only events addressed to them.';

DROP POLICY IF EXISTS vechat_events_insert_conversation_participant ON public.vechat_events;
CREATE POLICY vechat_events_insert_conversation_participant ON public.vechat_events
    FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM public.vechat_conversations c
                        WHERE c.organisation_id = vechat_events.organisation_id
                          AND c.id = vechat_events.conversation_id
                          AND ((c.participant1_id, c.participant1_type) = (recipient_id, recipient_type)
                               OR (c.participant2_id, c.participant2_type) = (recipient_id, recipient_type))));
COMMENT ON POLICY vechat_events_insert_conversation_participant ON public.vechat_events IS
    'Events are appended (by triggers) only about a conversation the writer takes part in (vechat_conversations_select_participant), for one of its two participants.';

-- Retention: vechat.prune_own_events (SECURITY DEFINER, as vechat_owner) deletes the calling
-- user's old events. vechat_app itself holds no DELETE on the event log, so only that function
-- (and a superuser) can use this policy.
DROP POLICY IF EXISTS vechat_events_delete_recipient ON public.vechat_events;
CREATE POLICY vechat_events_delete_recipient ON public.vechat_events
    FOR DELETE
    USING ((recipient_id, recipient_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_events_delete_recipient ON public.vechat_events IS
    'Pruning (vechat.prune_own_events) deletes only the transaction''s own user''s events.';
