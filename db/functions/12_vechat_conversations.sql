-- db/functions/12_vechat_conversations.sql — who may change which conversation column, and the events of a participant's own flags

-- Who may change what. Row-level security decides which rows a user reaches; this decides which
-- columns: a participant changes only their own flags. Counters and the last message are written
-- by the message triggers (trigger depth > 1), never directly by a client.
CREATE OR REPLACE FUNCTION vechat.conversations_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    me_id   bigint;
    me_type text;
    chk     public.vechat_conversations;
BEGIN
    -- One read of the context for both (the plan is kept for the session).
    SELECT c.user_id, c.user_type INTO me_id, me_type FROM vechat.context c;
    IF me_id IS NULL OR pg_catalog.pg_trigger_depth() > 1 THEN
        -- No user context: only a maintenance role (one that bypasses row-level security) gets
        -- here, because every participant policy needs a user. Nested: our own triggers.
        IF TG_OP = 'UPDATE' THEN
            NEW.updated_at := pg_catalog.now();
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.last_message_id := NULL;
        NEW.last_message_at := NULL;
        NEW.unread_count_participant1 := 0;
        NEW.unread_count_participant2 := 0;
        NEW.hidden_through_message_id_participant1 := NULL;
        NEW.hidden_through_message_id_participant2 := NULL;
        NEW.created_at := pg_catalog.now();
        NEW.updated_at := NEW.created_at;
        RETURN NEW;
    END IF;
    chk := NEW;
    IF (OLD.participant1_id, OLD.participant1_type) = (me_id, me_type) THEN
        chk.is_archived_by_participant1 := OLD.is_archived_by_participant1;
        chk.is_muted_by_participant1 := OLD.is_muted_by_participant1;
        chk.hidden_through_message_id_participant1 := OLD.hidden_through_message_id_participant1;
    END IF;
    IF (OLD.participant2_id, OLD.participant2_type) = (me_id, me_type) THEN
        chk.is_archived_by_participant2 := OLD.is_archived_by_participant2;
        chk.is_muted_by_participant2 := OLD.is_muted_by_participant2;
        chk.hidden_through_message_id_participant2 := OLD.hidden_through_message_id_participant2;
    END IF;
    chk.updated_at := OLD.updated_at;
    IF chk IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'a participant may change only their own archived, muted and hidden flags'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

-- Not for the message triggers' own updates of counters and the last message (trigger depth
-- 1 when the WHEN is evaluated): skipping the call there saves a function call per message
-- sent; those updates set updated_at themselves.
CREATE OR REPLACE TRIGGER vechat_conversations_guard
    BEFORE INSERT OR UPDATE ON public.vechat_conversations
    FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() < 1)
    EXECUTE FUNCTION vechat.conversations_guard();

-- A participant's own flags (archived, muted, deleted for me) changed directly: their other tabs
-- and devices hear of it. SECURITY DEFINER because only the owner appends to the event log.
CREATE OR REPLACE FUNCTION vechat.conversations_after_update() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() > 1 THEN
        RETURN NULL;  -- written by the message triggers, which emit their own events
    END IF;
    IF (NEW.is_archived_by_participant1, NEW.is_muted_by_participant1, NEW.hidden_through_message_id_participant1)
       IS DISTINCT FROM
       (OLD.is_archived_by_participant1, OLD.is_muted_by_participant1, OLD.hidden_through_message_id_participant1) THEN
        PERFORM vechat.emit(NEW.organisation_id, NEW.participant1_id, NEW.participant1_type,
                            'conversation.updated', NEW.id, NULL);
    END IF;
    IF (NEW.is_archived_by_participant2, NEW.is_muted_by_participant2, NEW.hidden_through_message_id_participant2)
       IS DISTINCT FROM
       (OLD.is_archived_by_participant2, OLD.is_muted_by_participant2, OLD.hidden_through_message_id_participant2) THEN
        PERFORM vechat.emit(NEW.organisation_id, NEW.participant2_id, NEW.participant2_type,
                            'conversation.updated', NEW.id, NULL);
    END IF;
    RETURN NULL;
END
$$;

-- Queued only for a participant's own update (depth 0 when the WHEN is evaluated): a message
-- sent updates its conversation in a trigger, and an event queued there would only return.
CREATE OR REPLACE TRIGGER vechat_conversations_after_update
    AFTER UPDATE ON public.vechat_conversations
    FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() < 1)
    EXECUTE FUNCTION vechat.conversations_after_update();
