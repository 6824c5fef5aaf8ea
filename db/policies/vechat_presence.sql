-- db/policies/vechat_presence.sql — presence is public within the organisation, written by its user

ALTER TABLE public.vechat_presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_presence FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_presence FROM PUBLIC;

DROP POLICY IF EXISTS vechat_presence_organisation_isolation ON public.vechat_presence;
CREATE POLICY vechat_presence_organisation_isolation ON public.vechat_presence
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_organisation_isolation ON public.vechat_presence IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, UPDATE ON public.vechat_presence TO vechat_app;

DROP POLICY IF EXISTS vechat_presence_select_organisation ON public.vechat_presence;
CREATE POLICY vechat_presence_select_organisation ON public.vechat_presence
    FOR SELECT
    USING (true);
COMMENT ON POLICY vechat_presence_select_organisation ON public.vechat_presence IS
    'Everyone of the organisation reads presence (the API hides users whose show_online_status is false).';

DROP POLICY IF EXISTS vechat_presence_insert_self ON public.vechat_presence;
CREATE POLICY vechat_presence_insert_self ON public.vechat_presence
    FOR INSERT
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_insert_self ON public.vechat_presence IS
    'A user creates only their own presence row.';

DROP POLICY IF EXISTS vechat_presence_update_self ON public.vechat_presence;
CREATE POLICY vechat_presence_update_self ON public.vechat_presence
    FOR UPDATE
    USING ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_update_self ON public.vechat_presence IS
    'A user updates only their own presence row.';
