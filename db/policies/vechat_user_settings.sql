-- db/policies/vechat_user_settings.sql — settings belong to their user alone

ALTER TABLE public.vechat_user_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_user_settings FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_user_settings FROM PUBLIC;

DROP POLICY IF EXISTS vechat_user_settings_organisation_isolation ON public.vechat_user_settings;
CREATE POLICY vechat_user_settings_organisation_isolation ON public.vechat_user_settings
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_user_settings_organisation_isolation ON public.vechat_user_settings IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, UPDATE ON public.vechat_user_settings TO vechat_app;

DROP POLICY IF EXISTS vechat_user_settings_all_owner ON public.vechat_user_settings;
CREATE POLICY vechat_user_settings_all_owner ON public.vechat_user_settings
    FOR ALL
    USING ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_user_settings_all_owner ON public.vechat_user_settings IS
    'A user reads and writes only their own settings.';
