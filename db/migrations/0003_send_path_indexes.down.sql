-- db/migrations/0003_send_path_indexes.down.sql — the sender index 0001 created, back again

CREATE INDEX vechat_messages_organisation_id_sender_type_sender_id_idx
    ON public.vechat_messages (organisation_id, sender_type, sender_id);
