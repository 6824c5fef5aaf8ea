-- db/functions/01_ids.sql — ids of messages, conversations, attachments and edits, per organisation
--
-- One sequence per table for every organisation let a user count the other organisations' rows
-- in the gaps between their own ids. Each organisation now has its own sequence per kind
-- (vechat.id_sequences), so the ids it receives depend on its own writes alone. A new
-- organisation's ids start at organisation_id * 2^32 + 1: unique across organisations (the
-- composite keys would not need it, but a mix-up in a client never shows another tenant's row),
-- increasing within the organisation (so within a conversation, as every cursor of the contract
-- needs) and below 2^53 for organisations up to 2^21 (JavaScript-safe). Organisations that had
-- rows before (an adopted legacy database) continue after their highest id, so legacy ids stay
-- as they are and new ids sort after them.
--
-- Each organisation and kind has its own sequence (vechat.id_sequences says which, migration
-- 0005), made the first time the organisation inserts a row of that kind. A sequence hands out a
-- number and holds nothing until the commit: the counter rows it replaced were locked from the
-- insert to the commit, and an organisation's sends queued behind each other for that long. Like
-- any sequence it leaves a gap where a transaction rolls back — only this organisation's own.

-- The organisation's sequence for a kind, made if it has none; vechat.assign_id calls it only when
-- its own lookup found none (serialised per organisation and kind: a second caller waits, then
-- finds the first one's). Owner only.
CREATE OR REPLACE FUNCTION vechat.id_sequence(p_organisation_id bigint, p_kind text) RETURNS regclass
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    v_name  text;
    v_start bigint := p_organisation_id * 4294967296 + 1;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('vechat.id_sequence'),
                                             pg_catalog.hashtext(p_kind || ':' || p_organisation_id));
    SELECT s.sequence_name INTO v_name FROM vechat.id_sequences s  -- a new snapshot
    WHERE s.organisation_id = p_organisation_id AND s.kind = p_kind;
    IF v_name IS NULL THEN
        IF v_start >= 9007199254740992 OR v_start < 1 THEN
            RAISE EXCEPTION 'vechat.assign_id: % ids of organisation % are past 2^53', p_kind, p_organisation_id
                USING ERRCODE = '22003';
        END IF;
        v_name := 'ids_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
        EXECUTE pg_catalog.format(
            'CREATE SEQUENCE vechat.%I AS bigint MINVALUE 1 MAXVALUE 9007199254740991 START WITH %s',
            v_name, v_start);
        EXECUTE pg_catalog.format('REVOKE ALL ON SEQUENCE vechat.%I FROM PUBLIC', v_name);
        INSERT INTO vechat.id_sequences (organisation_id, kind, sequence_name)
        VALUES (p_organisation_id, p_kind, v_name);
    END IF;
    RETURN pg_catalog.format('vechat.%I', v_name)::regclass;
END
$$;
COMMENT ON FUNCTION vechat.id_sequence(bigint, text) IS
    'The sequence giving the ids of a kind of rows of an organisation, made on first use (vechat.id_sequences). Owner only.';

CREATE OR REPLACE FUNCTION vechat.assign_id() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    v_seq regclass;
BEGIN
    SELECT pg_catalog.format('vechat.%I', s.sequence_name)::regclass INTO v_seq
    FROM vechat.id_sequences s
    WHERE s.organisation_id = NEW.organisation_id AND s.kind = TG_ARGV[0];
    IF v_seq IS NULL THEN
        v_seq := vechat.id_sequence(NEW.organisation_id, TG_ARGV[0]);
    END IF;
    IF NEW.id IS NULL AND TG_ARGV[0] = 'message' THEN
        -- A conversation's messages get their ids in the order they commit (a client asking for
        -- the messages after the last id it saw misses none): its row is locked first. The send
        -- locks it anyway, a moment later, to update the conversation's counters.
        PERFORM 1 FROM public.vechat_conversations c
        WHERE c.organisation_id = NEW.organisation_id AND c.id = NEW.conversation_id
        FOR NO KEY UPDATE;
    END IF;
    IF NEW.id IS NULL THEN
        NEW.id := pg_catalog.nextval(v_seq);
    ELSIF NEW.id > coalesce(pg_catalog.pg_sequence_last_value(v_seq), 0) THEN
        -- An id given explicitly (the DBA's tools): later ones come after it. Only the
        -- organisation's own numbering can be moved this way.
        PERFORM pg_catalog.setval(v_seq, NEW.id, true);
    END IF;
    IF NEW.id >= 9007199254740992 THEN
        RAISE EXCEPTION 'vechat.assign_id: % ids of organisation % are past 2^53', TG_ARGV[0], NEW.organisation_id
            USING ERRCODE = '22003';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION vechat.assign_id() IS
    'BEFORE INSERT: the next id of the row''s organisation for the kind in the trigger''s argument (its sequence, vechat.id_sequence).';

CREATE OR REPLACE TRIGGER vechat_messages_before_insert_id
    BEFORE INSERT ON public.vechat_messages
    FOR EACH ROW EXECUTE FUNCTION vechat.assign_id('message');
CREATE OR REPLACE TRIGGER vechat_conversations_before_insert_id
    BEFORE INSERT ON public.vechat_conversations
    FOR EACH ROW EXECUTE FUNCTION vechat.assign_id('conversation');
CREATE OR REPLACE TRIGGER vechat_attachments_before_insert_id
    BEFORE INSERT ON public.vechat_attachments
    FOR EACH ROW EXECUTE FUNCTION vechat.assign_id('attachment');
CREATE OR REPLACE TRIGGER vechat_message_edits_before_insert_id
    BEFORE INSERT ON public.vechat_message_edits
    FOR EACH ROW EXECUTE FUNCTION vechat.assign_id('message_edit');
