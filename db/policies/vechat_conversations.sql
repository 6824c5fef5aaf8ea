-- db/policies/vechat_conversations.sql — only the two participants reach a conversation

ALTER TABLE public.vechat_conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_conversations FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_conversations FROM PUBLIC;

DROP POLICY IF EXISTS vechat_conversations_organisation_isolation ON public.vechat_conversations;
CREATE POLICY vechat_conversations_organisation_isolation ON public.vechat_conversations
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_conversations_organisation_isolation ON public.vechat_conversations IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, UPDATE ON public.vechat_conversations TO vechat_app;

DROP POLICY IF EXISTS vechat_conversations_select_participant ON public.vechat_conversations;
CREATE POLICY vechat_conversations_select_participant ON public.vechat_conversations
    FOR SELECT
    USING (((participant1_id, participant1_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
           OR ((participant2_id, participant2_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_conversations_select_participant ON public.vechat_conversations IS
    'A user reads only the conversations they take part in.';

DROP POLICY IF EXISTS vechat_conversations_insert_participant ON public.vechat_conversations;
CREATE POLICY vechat_conversations_insert_participant ON public.vechat_conversations
    FOR INSERT
    WITH CHECK (((participant1_id, participant1_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
                OR ((participant2_id, participant2_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_conversations_insert_participant ON public.vechat_conversations IS
    'A user starts only conversations they take part in.';

DROP POLICY IF EXISTS vechat_conversations_update_participant ON public.vechat_conversations;
CREATE POLICY vechat_conversations_update_participant ON public.vechat_conversations
    FOR UPDATE
    USING (((participant1_id, participant1_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
           OR ((participant2_id, participant2_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)))
    WITH CHECK (((participant1_id, participant1_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
                OR ((participant2_id, participant2_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_conversations_update_participant ON public.vechat_conversations IS
    'A participant updates the conversation; which columns each may change is vechat.conversations_guard''s rule.';
