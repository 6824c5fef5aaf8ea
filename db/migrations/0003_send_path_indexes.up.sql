-- db/migrations/0003_send_path_indexes.up.sql — fewer index entries written per message sent

-- (organisation_id, sender_type, sender_id) is the leading part of the unique key
-- vechat_messages_organisation_id_sender_type_sender_id_client_id_key, which serves every lookup
-- by sender (the participant policies' sender branch, a sender's messages) as well. Each message
-- sent wrote both; now it writes the key alone.
DROP INDEX public.vechat_messages_organisation_id_sender_type_sender_id_idx;

-- The participant indexes without last_message_at: the conversation list orders by
-- coalesce(last_message_at, created_at) over both participant indexes, which this column could
-- not serve, and because it was indexed, every message sent made its conversation's update a
-- non-HOT one: a new entry in each of the conversation's four indexes. Now that update is HOT
-- (heap only) whenever the page has room.
DROP INDEX public.vechat_conversations_participant1_idx;
DROP INDEX public.vechat_conversations_participant2_idx;
CREATE INDEX vechat_conversations_participant1_idx
    ON public.vechat_conversations (organisation_id, participant1_type, participant1_id);
CREATE INDEX vechat_conversations_participant2_idx
    ON public.vechat_conversations (organisation_id, participant2_type, participant2_id);
