-- db/migrations/0003_send_path_indexes.down.sql — the indexes as 0001 created them

CREATE INDEX vechat_messages_organisation_id_sender_type_sender_id_idx
    ON public.vechat_messages (organisation_id, sender_type, sender_id);

DROP INDEX public.vechat_conversations_participant1_idx;
DROP INDEX public.vechat_conversations_participant2_idx;
CREATE INDEX vechat_conversations_participant1_idx
    ON public.vechat_conversations (organisation_id, participant1_type, participant1_id, last_message_at DESC);
CREATE INDEX vechat_conversations_participant2_idx
    ON public.vechat_conversations (organisation_id, participant2_type, participant2_id, last_message_at DESC);
