-- db/functions/13_vechat_messages.sql — who may change which message column

-- Which columns each participant may set. Row-level security lets sender and receiver reach a
-- message; this trigger makes sure the receiver only marks it read/delivered/hidden and only the
-- sender edits, deletes for everyone, or hides it for themselves.
CREATE OR REPLACE FUNCTION vechat.messages_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    me_id   bigint;
    me_type text;
    chk     public.vechat_messages;
BEGIN
    -- One read of the context for both (the plan is kept for the session).
    SELECT c.user_id, c.user_type INTO me_id, me_type FROM vechat.context c;
    IF TG_OP = 'INSERT' THEN
        IF me_id IS NOT NULL AND pg_catalog.pg_trigger_depth() = 1 THEN
            -- A new message starts unread, undeleted and unedited, stamped by the server.
            NEW.is_read := false;
            NEW.read_at := NULL;
            NEW.is_delivered := false;
            NEW.delivered_at := NULL;
            NEW.is_deleted_by_sender := false;
            NEW.is_deleted_by_receiver := false;
            NEW.deleted_at := NULL;
            NEW.is_edited := false;
            NEW.edited_at := NULL;
            NEW.original_message := NULL;
            NEW.created_at := pg_catalog.now();
            NEW.updated_at := NEW.created_at;
        END IF;
        RETURN NEW;
    END IF;

    IF me_id IS NOT NULL AND pg_catalog.pg_trigger_depth() = 1 THEN
        -- The server stamps the times: a participant sets the flags, never when they happened
        -- (a forged read_at would travel to the peer in the read receipt).
        IF (OLD.receiver_id, OLD.receiver_type) = (me_id, me_type) THEN
            NEW.read_at := CASE WHEN NEW.is_read AND NOT OLD.is_read THEN pg_catalog.now() ELSE OLD.read_at END;
            NEW.delivered_at := CASE WHEN NEW.is_delivered AND NOT OLD.is_delivered
                                     THEN pg_catalog.now() ELSE OLD.delivered_at END;
        END IF;
        IF (OLD.sender_id, OLD.sender_type) = (me_id, me_type) AND NEW.deleted_at IS NOT NULL THEN
            NEW.deleted_at := coalesce(OLD.deleted_at, pg_catalog.now());
        END IF;
        chk := NEW;
        IF (OLD.sender_id, OLD.sender_type) = (me_id, me_type) THEN
            IF NEW.message IS DISTINCT FROM OLD.message
               AND (OLD.message_type <> 'text' OR OLD.deleted_at IS NOT NULL OR NEW.message IS NULL) THEN
                RAISE EXCEPTION 'only the text of a text message that is not deleted can be edited'
                    USING ERRCODE = 'check_violation';
            END IF;
            chk.message := OLD.message;
            chk.is_deleted_by_sender := OLD.is_deleted_by_sender;
            IF NEW.deleted_at IS NOT NULL THEN
                chk.deleted_at := OLD.deleted_at;
            END IF;
        END IF;
        IF (OLD.receiver_id, OLD.receiver_type) = (me_id, me_type) THEN
            -- Read, delivered and hidden only ever go from false to true.
            IF NEW.is_read OR NOT OLD.is_read THEN
                chk.is_read := OLD.is_read;
                chk.read_at := OLD.read_at;
            END IF;
            IF NEW.is_delivered OR NOT OLD.is_delivered THEN
                chk.is_delivered := OLD.is_delivered;
                chk.delivered_at := OLD.delivered_at;
            END IF;
            IF NEW.is_deleted_by_receiver OR NOT OLD.is_deleted_by_receiver THEN
                chk.is_deleted_by_receiver := OLD.is_deleted_by_receiver;
            END IF;
        END IF;
        chk.updated_at := OLD.updated_at;
        chk.search_vector := OLD.search_vector;  -- generated after BEFORE triggers run
        IF chk IS DISTINCT FROM OLD THEN
            RAISE EXCEPTION 'this participant may not change these columns of message %', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    IF NEW.is_read AND NOT OLD.is_read AND NEW.read_at IS NULL THEN
        NEW.read_at := pg_catalog.now();
    END IF;
    IF NEW.is_read AND NOT NEW.is_delivered THEN
        NEW.is_delivered := true;
    END IF;
    IF NEW.is_delivered AND NEW.delivered_at IS NULL THEN
        NEW.delivered_at := coalesce(NEW.read_at, pg_catalog.now());
    END IF;
    IF NEW.message IS DISTINCT FROM OLD.message AND OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL THEN
        NEW.is_edited := true;
        NEW.edited_at := pg_catalog.now();
        NEW.original_message := coalesce(OLD.original_message, OLD.message);
    END IF;
    IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
        -- Deleted for everyone: keep a tombstone, drop the content.
        NEW.message := NULL;
        NEW.original_message := NULL;
        NEW.attachment_id := NULL;
        NEW.file_url := NULL;
        NEW.file_name := NULL;
        NEW.file_size := NULL;
        NEW.file_type := NULL;
        NEW.location_latitude := NULL;
        NEW.location_longitude := NULL;
        NEW.location_accuracy := NULL;
        NEW.audio_duration := NULL;
        NEW.audio_waveform := NULL;
    END IF;
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER vechat_messages_guard
    BEFORE INSERT OR UPDATE ON public.vechat_messages
    FOR EACH ROW EXECUTE FUNCTION vechat.messages_guard();
