-- db/schema/12_vechat_conversations.sql — one row per pair of participants per organisation

CREATE TABLE public.vechat_conversations (
    organisation_id              bigint      NOT NULL,
    id                           bigint      NOT NULL,
    participant1_id              bigint      NOT NULL,
    participant1_type            varchar(20) NOT NULL,
    participant2_id              bigint      NOT NULL,
    participant2_type            varchar(20) NOT NULL,
    last_message_id              bigint,
    last_message_at              timestamptz,
    unread_count_participant1    integer     NOT NULL DEFAULT 0,
    unread_count_participant2    integer     NOT NULL DEFAULT 0,
    is_archived_by_participant1  boolean     NOT NULL DEFAULT false,
    is_archived_by_participant2  boolean     NOT NULL DEFAULT false,
    is_muted_by_participant1     boolean     NOT NULL DEFAULT false,
    is_muted_by_participant2     boolean     NOT NULL DEFAULT false,
    hidden_through_message_id_participant1 bigint,
    hidden_through_message_id_participant2 bigint,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vechat_conversations_pkey PRIMARY KEY (organisation_id, id),
    -- One conversation per pair per organisation, whatever order the pair is given in: pairs are
    -- stored normalised (lower id first; equal ids: 'client' < 'personnel'), as the legacy data is.
    CONSTRAINT vechat_conversations_participants_key UNIQUE
        (organisation_id, participant1_id, participant1_type, participant2_id, participant2_type),
    CONSTRAINT vechat_conversations_participant1_type_check CHECK (participant1_type IN ('personnel', 'client')),
    CONSTRAINT vechat_conversations_participant2_type_check CHECK (participant2_type IN ('personnel', 'client')),
    CONSTRAINT vechat_conversations_participants_order_check
        CHECK ((participant1_id, participant1_type) < (participant2_id, participant2_type)),
    CONSTRAINT vechat_conversations_organisation_id_check CHECK (organisation_id > 0)
);
COMMENT ON TABLE public.vechat_conversations IS
    '1:1 conversations. Counters, last message and un-archiving are maintained by triggers on vechat_messages, in the writing transaction.';
COMMENT ON COLUMN public.vechat_conversations.unread_count_participant1 IS
    'Messages to participant 1 not read, not deleted for everyone, not hidden by participant 1. Kept by vechat.messages_after_* triggers only.';
COMMENT ON COLUMN public.vechat_conversations.hidden_through_message_id_participant1 IS
    'Participant 1 deleted the conversation "for me" when this was the newest message: it is listed again only once a newer message arrives.';

-- Without last_message_at (migration 0003): the list orders by an expression these could not
-- serve, and an indexed last_message_at made every message's update of its conversation non-HOT.
CREATE INDEX vechat_conversations_participant1_idx
    ON public.vechat_conversations (organisation_id, participant1_type, participant1_id);
CREATE INDEX vechat_conversations_participant2_idx
    ON public.vechat_conversations (organisation_id, participant2_type, participant2_id);
