-- db/policies/vechat_realtime.sql — what the realtime functions (db/schema/19_vechat_realtime.sql) may do

-- Retention: vechat.prune_own_events (SECURITY DEFINER, as vechat_owner) deletes the calling
-- user's old events. vechat_app itself holds no DELETE on the event log, so only that function
-- (and a superuser) can use this policy.
DROP POLICY IF EXISTS vechat_events_delete_recipient ON public.vechat_events;
CREATE POLICY vechat_events_delete_recipient ON public.vechat_events
    FOR DELETE
    USING (recipient_id = (SELECT vechat.current_user_id()) AND recipient_type = (SELECT vechat.current_user_type()));
COMMENT ON POLICY vechat_events_delete_recipient ON public.vechat_events IS
    'Pruning (vechat.prune_own_events) deletes only the transaction''s own user''s events.';

-- vechat.prune_events is the DBA's, run as a superuser: the application has no use for it.
REVOKE EXECUTE ON FUNCTION vechat.prune_events(integer) FROM vechat_app;
