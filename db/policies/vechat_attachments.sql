-- db/policies/vechat_attachments.sql — files are read by their uploader and the conversation that carries them

ALTER TABLE public.vechat_attachments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_attachments FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_attachments FROM PUBLIC;

DROP POLICY IF EXISTS vechat_attachments_organisation_isolation ON public.vechat_attachments;
CREATE POLICY vechat_attachments_organisation_isolation ON public.vechat_attachments
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_attachments_organisation_isolation ON public.vechat_attachments IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, DELETE ON public.vechat_attachments TO vechat_app;

DROP POLICY IF EXISTS vechat_attachments_select_uploader_or_participant ON public.vechat_attachments;
CREATE POLICY vechat_attachments_select_uploader_or_participant ON public.vechat_attachments
    FOR SELECT
    USING (((uploader_id, uploader_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
           OR EXISTS (SELECT 1 FROM public.vechat_messages m
                      WHERE m.organisation_id = vechat_attachments.organisation_id
                        AND m.attachment_id = vechat_attachments.id));
COMMENT ON POLICY vechat_attachments_select_uploader_or_participant ON public.vechat_attachments IS
    'The uploader reads a file, and so does anyone who may read a message carrying it (vechat_messages_select_participant).';

DROP POLICY IF EXISTS vechat_attachments_insert_uploader ON public.vechat_attachments;
CREATE POLICY vechat_attachments_insert_uploader ON public.vechat_attachments
    FOR INSERT
    WITH CHECK (((uploader_id, uploader_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_attachments_insert_uploader ON public.vechat_attachments IS
    'A user uploads only as themselves.';

DROP POLICY IF EXISTS vechat_attachments_delete_uploader ON public.vechat_attachments;
CREATE POLICY vechat_attachments_delete_uploader ON public.vechat_attachments
    FOR DELETE
    USING (((uploader_id, uploader_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_attachments_delete_uploader ON public.vechat_attachments IS
    'Only the uploader removes a file.';
