-- db/schema/13_vechat_messages.sql — messages, their edit history, and who may change which column

CREATE TABLE public.vechat_messages (
    organisation_id        bigint        NOT NULL,
    id                     bigint        NOT NULL,
    conversation_id        bigint        NOT NULL,
    sender_id              bigint        NOT NULL,
    sender_type            varchar(20)   NOT NULL,
    receiver_id            bigint        NOT NULL,
    receiver_type          varchar(20)   NOT NULL,
    message                text,
    message_type           varchar(20)   NOT NULL DEFAULT 'text',
    attachment_id          bigint,
    file_url               varchar(500),
    file_name              varchar(255),
    file_size              bigint,
    file_type              varchar(100),
    reply_to_message_id    bigint,
    client_id              varchar(64),
    is_read                boolean       NOT NULL DEFAULT false,
    read_at                timestamptz,
    is_delivered           boolean       NOT NULL DEFAULT false,
    delivered_at           timestamptz,
    is_deleted_by_sender   boolean       NOT NULL DEFAULT false,
    is_deleted_by_receiver boolean       NOT NULL DEFAULT false,
    deleted_at             timestamptz,
    is_edited              boolean       NOT NULL DEFAULT false,
    edited_at              timestamptz,
    original_message       text,
    location_latitude      numeric(10,8),
    location_longitude     numeric(11,8),
    location_accuracy      numeric(10,2),
    audio_duration         integer,
    audio_waveform         text,
    created_at             timestamptz   NOT NULL DEFAULT now(),
    updated_at             timestamptz   NOT NULL DEFAULT now(),
    search_vector          tsvector      GENERATED ALWAYS AS
                               (to_tsvector('simple'::regconfig, coalesce(message, ''))) STORED,
    CONSTRAINT vechat_messages_pkey PRIMARY KEY (organisation_id, id),
    -- Target of the reply and last-message keys: both must stay inside one conversation.
    CONSTRAINT vechat_messages_organisation_id_conversation_id_id_key
        UNIQUE (organisation_id, conversation_id, id),
    -- Retries with the same client_id from the same sender never duplicate a message.
    CONSTRAINT vechat_messages_organisation_id_sender_type_sender_id_client_id_key
        UNIQUE (organisation_id, sender_type, sender_id, client_id),
    CONSTRAINT vechat_messages_conversation_fkey FOREIGN KEY (organisation_id, conversation_id)
        REFERENCES public.vechat_conversations (organisation_id, id),
    CONSTRAINT vechat_messages_reply_to_fkey
        FOREIGN KEY (organisation_id, conversation_id, reply_to_message_id)
        REFERENCES public.vechat_messages (organisation_id, conversation_id, id)
        ON DELETE SET NULL (reply_to_message_id),
    -- Only the uploader can attach a file: the key includes the sender.
    CONSTRAINT vechat_messages_attachment_fkey
        FOREIGN KEY (organisation_id, attachment_id, sender_id, sender_type)
        REFERENCES public.vechat_attachments (organisation_id, id, uploader_id, uploader_type)
        ON DELETE SET NULL (attachment_id),
    CONSTRAINT vechat_messages_sender_type_check CHECK (sender_type IN ('personnel', 'client')),
    CONSTRAINT vechat_messages_receiver_type_check CHECK (receiver_type IN ('personnel', 'client')),
    CONSTRAINT vechat_messages_message_type_check
        CHECK (message_type IN ('text', 'image', 'file', 'video', 'voice', 'audio', 'location')),
    CONSTRAINT vechat_messages_location_check CHECK (
        (location_latitude IS NULL OR location_latitude BETWEEN -90 AND 90)
        AND (location_longitude IS NULL OR location_longitude BETWEEN -180 AND 180)
        AND (location_accuracy IS NULL OR location_accuracy >= 0)),
    CONSTRAINT vechat_messages_audio_duration_check CHECK (audio_duration IS NULL OR audio_duration >= 0),
    CONSTRAINT vechat_messages_client_id_check CHECK (client_id IS NULL OR client_id <> ''),
    CONSTRAINT check_delivered_before_read CHECK (delivered_at IS NULL OR read_at IS NULL OR delivered_at <= read_at),
    CONSTRAINT check_edited_date CHECK (edited_at IS NULL OR edited_at >= created_at)
);
COMMENT ON TABLE public.vechat_messages IS
    'Chat messages. Readable only by their sender and receiver (policy vechat_messages_select_participant); column rules in vechat.messages_guard.';
COMMENT ON COLUMN public.vechat_messages.message IS 'The body (the API calls it body). NULL once deleted for everyone.';
COMMENT ON COLUMN public.vechat_messages.message_type IS 'voice is the legacy spelling of audio; the API returns audio.';
COMMENT ON COLUMN public.vechat_messages.is_deleted_by_sender IS 'The sender deleted it "for me": hidden from the sender only.';
COMMENT ON COLUMN public.vechat_messages.is_deleted_by_receiver IS 'The receiver deleted it "for me": hidden from the receiver only.';
COMMENT ON COLUMN public.vechat_messages.deleted_at IS 'Deleted for everyone: a tombstone, content columns cleared.';
COMMENT ON COLUMN public.vechat_messages.original_message IS 'Legacy: the body before the first edit. Every version is in vechat_message_edits.';

-- Lookups by sender use the client_id key above (its leading columns): no index of their own
-- (dropped by migration 0003: one index fewer to write per message).
CREATE INDEX vechat_messages_organisation_id_receiver_type_receiver_id_idx
    ON public.vechat_messages (organisation_id, receiver_type, receiver_id);
CREATE INDEX vechat_messages_organisation_id_attachment_id_idx
    ON public.vechat_messages (organisation_id, attachment_id) WHERE attachment_id IS NOT NULL;
CREATE INDEX vechat_messages_organisation_id_reply_to_message_id_idx
    ON public.vechat_messages (organisation_id, reply_to_message_id) WHERE reply_to_message_id IS NOT NULL;
CREATE INDEX vechat_messages_search_vector_idx ON public.vechat_messages USING gin (search_vector);
-- Marking a conversation read touches only its unread messages.
CREATE INDEX vechat_messages_unread_idx
    ON public.vechat_messages (organisation_id, conversation_id, receiver_type, receiver_id, id)
    WHERE NOT is_read AND deleted_at IS NULL;

CREATE TABLE public.vechat_message_edits (
    organisation_id  bigint      NOT NULL,
    id               bigint      NOT NULL,
    message_id       bigint      NOT NULL,
    previous_message text        NOT NULL,
    edited_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vechat_message_edits_pkey PRIMARY KEY (organisation_id, id),
    CONSTRAINT vechat_message_edits_message_fkey FOREIGN KEY (organisation_id, message_id)
        REFERENCES public.vechat_messages (organisation_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE public.vechat_message_edits IS
    'Every previous version of an edited message, written by a trigger; removed when the message is deleted for everyone.';
CREATE INDEX vechat_message_edits_organisation_id_message_id_idx
    ON public.vechat_message_edits (organisation_id, message_id, id);

-- The conversation's last message must be one of its own messages.
ALTER TABLE public.vechat_conversations
    ADD CONSTRAINT vechat_conversations_last_message_fkey
    FOREIGN KEY (organisation_id, id, last_message_id)
    REFERENCES public.vechat_messages (organisation_id, conversation_id, id)
    ON DELETE SET NULL (last_message_id);
CREATE INDEX vechat_messages_organisation_id_conversation_id_created_at_idx
    ON public.vechat_messages (organisation_id, conversation_id, created_at);
