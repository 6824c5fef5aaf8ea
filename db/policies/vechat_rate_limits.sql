-- db/policies/vechat_rate_limits.sql — a user's rate-limit counters are their own

ALTER TABLE public.vechat_rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_rate_limits FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_rate_limits FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON public.vechat_rate_limits TO vechat_app;

DROP POLICY IF EXISTS vechat_rate_limits_organisation_isolation ON public.vechat_rate_limits;
CREATE POLICY vechat_rate_limits_organisation_isolation ON public.vechat_rate_limits
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_rate_limits_organisation_isolation ON public.vechat_rate_limits IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';

DROP POLICY IF EXISTS vechat_rate_limits_all_owner ON public.vechat_rate_limits;
CREATE POLICY vechat_rate_limits_all_owner ON public.vechat_rate_limits
    FOR ALL
    USING ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_rate_limits_all_owner ON public.vechat_rate_limits IS
    'A user reads and bumps only their own counters.';
