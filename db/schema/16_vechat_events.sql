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

-- Append one event for one recipient. Writers that emit for several recipients call it in
-- (recipient_id, recipient_type) order -- the order conversation pairs are stored in -- so two
-- transactions never lock two cursors in opposite orders.
CREATE FUNCTION vechat.emit(
    p_organisation_id bigint, p_recipient_id bigint, p_recipient_type text, p_event_type text,
    p_conversation_id bigint, p_message_id bigint, p_data jsonb DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    v_seq bigint;
BEGIN
    INSERT INTO public.vechat_event_cursors AS c (organisation_id, user_id, user_type, last_seq)
    VALUES (p_organisation_id, p_recipient_id, p_recipient_type, 1)
    ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING c.last_seq INTO v_seq;
    INSERT INTO public.vechat_events
        (organisation_id, recipient_id, recipient_type, seq, event_type, conversation_id, message_id, data)
    VALUES (p_organisation_id, p_recipient_id, p_recipient_type, v_seq, p_event_type,
            p_conversation_id, p_message_id, p_data);
    RETURN v_seq;
END
$$;
COMMENT ON FUNCTION vechat.emit(bigint, bigint, text, text, bigint, bigint, jsonb) IS
    'Appends one event to a recipient''s log with the next gapless seq; the insert rings the doorbell. Called only by the message triggers (vechat_app may not execute it).';

-- The doorbell: after each insert statement, NOTIFY vechat_events with ids only. NOTIFY payloads
-- are visible to every role that may LISTEN, whatever row-level security says, so they never
-- carry content -- listeners read the events back under the recipient's context.
CREATE FUNCTION vechat.events_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    r record;
BEGIN
    IF pg_catalog.current_setting('vechat.doorbell', true) = 'off' THEN
        RETURN NULL;  -- benchmarks only: measure the event log without the doorbell
    END IF;
    FOR r IN
        SELECT n.organisation_id,
               pg_catalog.json_agg(pg_catalog.json_build_array(n.recipient_type, n.recipient_id, n.seq)) AS e
        FROM (SELECT *, (pg_catalog.row_number() OVER (ORDER BY organisation_id, recipient_type, recipient_id, seq) - 1) / 100 AS chunk
              FROM new_events) n
        GROUP BY n.organisation_id, n.chunk
    LOOP
        PERFORM pg_catalog.pg_notify('vechat_events',
            pg_catalog.json_build_object('o', r.organisation_id, 'e', r.e)::text);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER vechat_events_after_insert
    AFTER INSERT ON public.vechat_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION vechat.events_after_insert();
