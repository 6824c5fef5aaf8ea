-- db/schema/16_vechat_events.sql — the durable per-user event log and its doorbell

-- One row per recipient and event. seq is gapless and increasing per recipient: it is taken from
-- vechat_event_cursors in the writing transaction, so a rolled-back write leaves no hole and two
-- concurrent writers queue on the recipient's cursor row instead of racing.
CREATE TABLE public.vechat_events (
    organisation_id bigint      NOT NULL,
    recipient_id    bigint      NOT NULL,
    recipient_type  varchar(20) NOT NULL,
    seq             bigint      NOT NULL,
    event_type      varchar(40) NOT NULL,
    conversation_id bigint,
    message_id      bigint,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vechat_events_pkey PRIMARY KEY (organisation_id, recipient_type, recipient_id, seq),
    CONSTRAINT vechat_events_recipient_type_check CHECK (recipient_type IN ('personnel', 'client')),
    CONSTRAINT vechat_events_event_type_check CHECK (event_type IN (
        'message.created', 'message.updated', 'message.deleted', 'messages.read', 'conversation.updated'))
);
COMMENT ON TABLE public.vechat_events IS
    'Durable per-recipient event log: what a WebSocket client missed is replayed from here by seq. Rows hold ids (and read-receipt facts), content is read back under the recipient''s own context.';
CREATE INDEX vechat_events_created_at_idx ON public.vechat_events USING brin (created_at);

CREATE TABLE public.vechat_event_cursors (
    organisation_id bigint      NOT NULL,
    user_id         bigint      NOT NULL,
    user_type       varchar(20) NOT NULL,
    last_seq        bigint      NOT NULL DEFAULT 0,
    pruned_seq      bigint      NOT NULL DEFAULT 0,
    CONSTRAINT vechat_event_cursors_pkey PRIMARY KEY (organisation_id, user_type, user_id),
    CONSTRAINT vechat_event_cursors_user_type_check CHECK (user_type IN ('personnel', 'client')),
    CONSTRAINT vechat_event_cursors_seq_check CHECK (pruned_seq <= last_seq)
);
COMMENT ON TABLE public.vechat_event_cursors IS
    'Per-recipient sequence counter of vechat_events (last_seq) and retention mark (pruned_seq: events up to it are gone; a client resuming from before it must refetch).';
