-- db/policies/vechat_message_edits.sql — edit history is read by the message's participants

ALTER TABLE public.vechat_message_edits ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_message_edits FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_message_edits FROM PUBLIC;

DROP POLICY IF EXISTS vechat_message_edits_organisation_isolation ON public.vechat_message_edits;
CREATE POLICY vechat_message_edits_organisation_isolation ON public.vechat_message_edits
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_message_edits_organisation_isolation ON public.vechat_message_edits IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT ON public.vechat_message_edits TO vechat_app;
-- Written only by the message triggers (SECURITY DEFINER, as vechat_owner); these policies bind
-- that writer to the transaction's tenant and user all the same (row-level security is forced).
REVOKE INSERT, UPDATE, DELETE ON public.vechat_message_edits FROM vechat_app;

DROP POLICY IF EXISTS vechat_message_edits_select_participant ON public.vechat_message_edits;
CREATE POLICY vechat_message_edits_select_participant ON public.vechat_message_edits
    FOR SELECT
    USING (EXISTS (SELECT 1 FROM public.vechat_messages m
                   WHERE m.organisation_id = vechat_message_edits.organisation_id
                     AND m.id = vechat_message_edits.message_id));
COMMENT ON POLICY vechat_message_edits_select_participant ON public.vechat_message_edits IS
    'A user reads the edit history of messages they may read (vechat_messages_select_participant).';

DROP POLICY IF EXISTS vechat_message_edits_insert_sender ON public.vechat_message_edits;
CREATE POLICY vechat_message_edits_insert_sender ON public.vechat_message_edits
    FOR INSERT
    WITH CHECK (EXISTS (SELECT 1 FROM public.vechat_messages m
                        WHERE m.organisation_id = vechat_message_edits.organisation_id
                          AND m.id = vechat_message_edits.message_id
                          AND m.sender_id = (SELECT ctx.user_id FROM vechat.context ctx)
                          AND m.sender_type = (SELECT ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_message_edits_insert_sender ON public.vechat_message_edits IS
    'History rows are written (by the edit trigger) only for messages the user sent.';

DROP POLICY IF EXISTS vechat_message_edits_delete_sender ON public.vechat_message_edits;
CREATE POLICY vechat_message_edits_delete_sender ON public.vechat_message_edits
    FOR DELETE
    USING (EXISTS (SELECT 1 FROM public.vechat_messages m
                   WHERE m.organisation_id = vechat_message_edits.organisation_id
                     AND m.id = vechat_message_edits.message_id
                     AND m.sender_id = (SELECT ctx.user_id FROM vechat.context ctx)
                     AND m.sender_type = (SELECT ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_message_edits_delete_sender ON public.vechat_message_edits IS
    'History goes (by the delete-for-everyone trigger) only with a message the user sent.';
