-- db/functions/16_vechat_events.sql — appending to the durable event log, and its doorbell

-- Append one event for one recipient. Writers that emit for several recipients call it in
-- (recipient_id, recipient_type) order -- the order conversation pairs are stored in -- so two
-- transactions never lock two cursors in opposite orders.
CREATE OR REPLACE FUNCTION vechat.emit(
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

-- The doorbell: after each insert statement, NOTIFY vechat_events. NOTIFY payloads are visible to
-- every login that may LISTEN, whatever row-level security says, and anyone may NOTIFY: the
-- payload names no organisation, user or conversation -- only a signature the service's listeners
-- check (vechat.doorbell), so one rung from psql is told apart and dropped. A listener that hears
-- it reads every local user's new events back under their own signed context.
CREATE OR REPLACE FUNCTION vechat.events_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    v_bell text;
BEGIN
    IF pg_catalog.current_setting('vechat.doorbell', true) = 'off' THEN
        RETURN NULL;  -- the API rings after COMMIT instead (realtime/ringer.py)
    END IF;
    v_bell := vechat.doorbell('vechat_events');
    IF v_bell IS NOT NULL THEN
        PERFORM pg_catalog.pg_notify('vechat_events', v_bell);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER vechat_events_after_insert
    AFTER INSERT ON public.vechat_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION vechat.events_after_insert();
