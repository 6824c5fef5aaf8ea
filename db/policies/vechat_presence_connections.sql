-- db/policies/vechat_presence_connections.sql — connection leases: written by their user, visible to the organisation

ALTER TABLE public.vechat_presence_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_presence_connections FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_presence_connections FROM PUBLIC;

DROP POLICY IF EXISTS vechat_presence_connections_organisation_isolation ON public.vechat_presence_connections;
CREATE POLICY vechat_presence_connections_organisation_isolation ON public.vechat_presence_connections
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_connections_organisation_isolation ON public.vechat_presence_connections IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, UPDATE, DELETE ON public.vechat_presence_connections TO vechat_app;

DROP POLICY IF EXISTS vechat_presence_connections_select_organisation ON public.vechat_presence_connections;
CREATE POLICY vechat_presence_connections_select_organisation ON public.vechat_presence_connections
    FOR SELECT
    USING (true);
COMMENT ON POLICY vechat_presence_connections_select_organisation ON public.vechat_presence_connections IS
    'Everyone of the organisation may see whether a user has live connections (that is what presence is).';

DROP POLICY IF EXISTS vechat_presence_connections_insert_self ON public.vechat_presence_connections;
CREATE POLICY vechat_presence_connections_insert_self ON public.vechat_presence_connections
    FOR INSERT
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_connections_insert_self ON public.vechat_presence_connections IS
    'A server process registers a connection lease only under the connected user''s own context.';

DROP POLICY IF EXISTS vechat_presence_connections_update_self ON public.vechat_presence_connections;
CREATE POLICY vechat_presence_connections_update_self ON public.vechat_presence_connections
    FOR UPDATE
    USING ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
    WITH CHECK ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx));
COMMENT ON POLICY vechat_presence_connections_update_self ON public.vechat_presence_connections IS
    'A lease is renewed only under its user''s own context.';

DROP POLICY IF EXISTS vechat_presence_connections_delete_self_or_expired ON public.vechat_presence_connections;
CREATE POLICY vechat_presence_connections_delete_self_or_expired ON public.vechat_presence_connections
    FOR DELETE
    USING (((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)) OR expires_at < now());
COMMENT ON POLICY vechat_presence_connections_delete_self_or_expired ON public.vechat_presence_connections IS
    'A user removes their own leases; anyone of the organisation may sweep leases that have expired.';
