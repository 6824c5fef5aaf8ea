-- db/policies/vechat_messages.sql — who may read and write messages

ALTER TABLE public.vechat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_messages FORCE ROW LEVEL SECURITY;
REVOKE ALL ON public.vechat_messages FROM PUBLIC;

DROP POLICY IF EXISTS vechat_messages_organisation_isolation ON public.vechat_messages;
CREATE POLICY vechat_messages_organisation_isolation ON public.vechat_messages
    AS RESTRICTIVE FOR ALL
    USING (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx))
    WITH CHECK (organisation_id = (SELECT ctx.organisation_id FROM vechat.context ctx));
COMMENT ON POLICY vechat_messages_organisation_isolation ON public.vechat_messages IS
    'Every command sees and writes only rows of the transaction''s organisation; no organisation, no rows.';
GRANT SELECT, INSERT, UPDATE ON public.vechat_messages TO vechat_app;

DROP POLICY IF EXISTS vechat_messages_select_participant ON public.vechat_messages;
CREATE POLICY vechat_messages_select_participant ON public.vechat_messages
    FOR SELECT
    USING (((sender_id, sender_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
           OR ((receiver_id, receiver_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_messages_select_participant ON public.vechat_messages IS
    'A user reads only messages they sent or received.';

DROP POLICY IF EXISTS vechat_messages_insert_sender ON public.vechat_messages;
CREATE POLICY vechat_messages_insert_sender ON public.vechat_messages
    FOR INSERT
    WITH CHECK (((sender_id, sender_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
                AND EXISTS (
                    SELECT 1 FROM public.vechat_conversations c
                    WHERE c.organisation_id = vechat_messages.organisation_id
                      AND c.id = vechat_messages.conversation_id
                      AND ((c.participant1_id, c.participant1_type, c.participant2_id, c.participant2_type)
                               = (sender_id, sender_type, receiver_id, receiver_type)
                           OR (c.participant1_id, c.participant1_type, c.participant2_id, c.participant2_type)
                               = (receiver_id, receiver_type, sender_id, sender_type))));
COMMENT ON POLICY vechat_messages_insert_sender ON public.vechat_messages IS
    'A user sends only as themselves, into a conversation between exactly them and the receiver.';

DROP POLICY IF EXISTS vechat_messages_update_participant ON public.vechat_messages;
CREATE POLICY vechat_messages_update_participant ON public.vechat_messages
    FOR UPDATE
    USING (((sender_id, sender_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
           OR ((receiver_id, receiver_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)))
    WITH CHECK (((sender_id, sender_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx))
                OR ((receiver_id, receiver_type) = (SELECT ctx.user_id, ctx.user_type FROM vechat.context ctx)));
COMMENT ON POLICY vechat_messages_update_participant ON public.vechat_messages IS
    'Sender and receiver update a message; which columns each may change is vechat.messages_guard''s rule.';
