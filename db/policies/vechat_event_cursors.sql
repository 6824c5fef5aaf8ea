-- db/policies/vechat_event_cursors.sql — sequence counters of the event log

ALTER TABLE public.vechat_event_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_event_cursors FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_event_cursors FROM PUBLIC;

DROP POLICY IF EXISTS vechat_event_cursors_organisation_isolation ON public.vechat_event_cursors;
CREATE POLICY vechat_event_cursors_organisation_isolation ON public.vechat_event_cursors
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_event_cursors_organisation_isolation ON public.vechat_event_cursors IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT ON public.vechat_event_cursors TO vechat_app;
-- Written only by the message triggers (SECURITY DEFINER, as vechat_owner); these policies bind
-- that writer to the transaction's tenant and user all the same (row-level security is forced).
REVOKE INSERT, UPDATE, DELETE ON public.vechat_event_cursors FROM vechat_app;

DROP POLICY IF EXISTS vechat_event_cursors_select_organisation ON public.vechat_event_cursors;
CREATE POLICY vechat_event_cursors_select_organisation ON public.vechat_event_cursors
    FOR SELECT
    USING (true);
COMMENT ON POLICY vechat_event_cursors_select_organisation ON public.vechat_event_cursors IS
    'Writers of the organisation read the counter of the recipient they append for (vechat.emit); it holds numbers only.';

DROP POLICY IF EXISTS vechat_event_cursors_insert_organisation ON public.vechat_event_cursors;
CREATE POLICY vechat_event_cursors_insert_organisation ON public.vechat_event_cursors
    FOR INSERT
    WITH CHECK (true);
COMMENT ON POLICY vechat_event_cursors_insert_organisation ON public.vechat_event_cursors IS
    'The first event for a recipient creates their counter, whoever of the organisation writes it.';

DROP POLICY IF EXISTS vechat_event_cursors_update_organisation ON public.vechat_event_cursors;
CREATE POLICY vechat_event_cursors_update_organisation ON public.vechat_event_cursors
    FOR UPDATE
    USING (true)
    WITH CHECK (true);
COMMENT ON POLICY vechat_event_cursors_update_organisation ON public.vechat_event_cursors IS
    'Any writer of the organisation advances a recipient''s counter (vechat.emit); the organisation rule still applies.';
