-- db/functions/01_ids.sql — ids of messages, conversations, attachments and edits, per organisation
--
-- One sequence per table for every organisation let a user count the other organisations' rows
-- in the gaps between their own ids. Each organisation now has its own counter per kind
-- (vechat.id_counters), so the ids it receives depend on its own writes alone. A new
-- organisation's ids start at organisation_id * 2^32 + 1: unique across organisations (the
-- composite keys would not need it, but a mix-up in a client never shows another tenant's row),
-- increasing within the organisation (so within a conversation, as every cursor of the contract
-- needs) and below 2^53 for organisations up to 2^21 (JavaScript-safe). Organisations that had
-- rows before (an adopted legacy database) continue after their highest id, so legacy ids stay
-- as they are and new ids sort after them.
--
-- The counter row is locked from the insert to the commit: an organisation's inserts of one kind
-- queue behind each other for that long (docs/design.md, "Ids", has the measured cost).

CREATE OR REPLACE FUNCTION vechat.assign_id() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
BEGIN
    IF NEW.id IS NULL THEN
        INSERT INTO vechat.id_counters AS c (organisation_id, kind, last_id)
        VALUES (NEW.organisation_id, TG_ARGV[0], NEW.organisation_id * 4294967296 + 1)
        ON CONFLICT (organisation_id, kind) DO UPDATE SET last_id = c.last_id + 1
        RETURNING c.last_id INTO NEW.id;
    ELSE
        -- An id given explicitly (the DBA's tools): later ones come after it. Only the
        -- organisation's own numbering can be moved this way.
        INSERT INTO vechat.id_counters AS c (organisation_id, kind, last_id)
        VALUES (NEW.organisation_id, TG_ARGV[0], NEW.id)
        ON CONFLICT (organisation_id, kind) DO UPDATE SET last_id = GREATEST(c.last_id, EXCLUDED.last_id);
    END IF;
    IF NEW.id >= 9007199254740992 THEN
        RAISE EXCEPTION 'vechat.assign_id: % ids of organisation % are past 2^53', TG_ARGV[0], NEW.organisation_id
            USING ERRCODE = '22003';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION vechat.assign_id() IS
    'BEFORE INSERT: the next id of the row''s organisation for the kind in the trigger''s argument (vechat.id_counters).';

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
