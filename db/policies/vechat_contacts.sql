-- db/policies/vechat_contacts.sql — who may read and write the organisation's directory

ALTER TABLE public.vechat_contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_contacts FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_contacts FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.vechat_contacts TO vechat_app;

DROP POLICY IF EXISTS vechat_contacts_organisation_isolation ON public.vechat_contacts;
CREATE POLICY vechat_contacts_organisation_isolation ON public.vechat_contacts
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_contacts_organisation_isolation ON public.vechat_contacts IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';

DROP POLICY IF EXISTS vechat_contacts_select_visible ON public.vechat_contacts;
CREATE POLICY vechat_contacts_select_visible ON public.vechat_contacts
    FOR SELECT
    USING ((SELECT ctx.user_type FROM vechat.context ctx) = 'personnel'
           OR user_type = 'personnel'
           OR ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_contacts_select_visible ON public.vechat_contacts IS
    'Personnel read the whole directory; a client reads personnel and its own row, never other clients.';

DROP POLICY IF EXISTS vechat_contacts_insert_self_or_admin ON public.vechat_contacts;
CREATE POLICY vechat_contacts_insert_self_or_admin ON public.vechat_contacts
    FOR INSERT
    WITH CHECK ((SELECT ctx.role FROM vechat.context ctx) = 'admin'
                OR ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_contacts_insert_self_or_admin ON public.vechat_contacts IS
    'A user creates their own row on first use; an admin creates any row of the organisation.';

DROP POLICY IF EXISTS vechat_contacts_update_self_or_admin ON public.vechat_contacts;
CREATE POLICY vechat_contacts_update_self_or_admin ON public.vechat_contacts
    FOR UPDATE
    USING ((SELECT ctx.role FROM vechat.context ctx) = 'admin'
           OR ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)))
    WITH CHECK ((SELECT ctx.role FROM vechat.context ctx) = 'admin'
                OR ((user_id, user_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_contacts_update_self_or_admin ON public.vechat_contacts IS
    'A user updates their own row; an admin updates any row of the organisation.';

DROP POLICY IF EXISTS vechat_contacts_delete_admin ON public.vechat_contacts;
CREATE POLICY vechat_contacts_delete_admin ON public.vechat_contacts
    FOR DELETE
    USING ((SELECT ctx.role FROM vechat.context ctx) = 'admin');
COMMENT ON POLICY vechat_contacts_delete_admin ON public.vechat_contacts IS
    'Only an admin removes rows from the directory.';
