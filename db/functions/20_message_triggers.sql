-- db/functions/20_message_triggers.sql — counters, last message, un-archiving and events, in the writing transaction
--
-- One source of truth for every counter: these triggers. They add deltas under the conversation's
-- row lock (UPDATE ... SET n = n + d), so concurrent senders and readers never lose an update the
-- way a read-modify-write would, and nothing else counts (the legacy double-counting came from a
-- trigger and the application both incrementing).
--
-- unread for a participant = messages to them that are not read, not deleted for everyone and not
-- hidden by them. vechat.recount_unread() computes the same from scratch.
--
-- The trigger functions are SECURITY DEFINER (owner vechat_owner): the event log, the cursors and
-- the edit history are written only through them, so vechat_app holds no INSERT on those tables
-- and cannot forge an event or rewrite history. Row-level security is forced, so the owner is
-- still bound by every policy and by the transaction's tenant and user.

CREATE OR REPLACE FUNCTION vechat.messages_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    conv        public.vechat_conversations;
    unread      integer := (NOT NEW.is_read AND NEW.deleted_at IS NULL AND NOT NEW.is_deleted_by_receiver)::integer;
    receiver_p1 boolean;
    unarchived  boolean;
BEGIN
    SELECT * INTO conv FROM public.vechat_conversations c
    WHERE c.organisation_id = NEW.organisation_id AND c.id = NEW.conversation_id
    -- NO KEY UPDATE, not UPDATE: the foreign-key check on the insert already holds KEY SHARE on
    -- this row, and FOR UPDATE would conflict with every concurrent sender's KEY SHARE
    -- (deadlock). NO KEY UPDATE still queues senders on the row, which keeps counters exact.
    FOR NO KEY UPDATE;
    receiver_p1 := (conv.participant1_id, conv.participant1_type) = (NEW.receiver_id, NEW.receiver_type);
    unarchived := CASE WHEN receiver_p1 THEN conv.is_archived_by_participant1 ELSE conv.is_archived_by_participant2 END;

    -- updated_at is set here: vechat.conversations_guard does not run for our own nested updates.
    UPDATE public.vechat_conversations c SET
        unread_count_participant1 = c.unread_count_participant1 + CASE WHEN receiver_p1 THEN unread ELSE 0 END,
        unread_count_participant2 = c.unread_count_participant2 + CASE WHEN receiver_p1 THEN 0 ELSE unread END,
        is_archived_by_participant1 = c.is_archived_by_participant1 AND NOT receiver_p1,
        is_archived_by_participant2 = c.is_archived_by_participant2 AND receiver_p1,
        last_message_id = CASE WHEN c.last_message_id IS NULL OR NEW.id > c.last_message_id
                               THEN NEW.id ELSE c.last_message_id END,
        last_message_at = CASE WHEN c.last_message_id IS NULL OR NEW.id > c.last_message_id
                               THEN NEW.created_at ELSE c.last_message_at END,
        updated_at = pg_catalog.now()
    WHERE c.organisation_id = NEW.organisation_id AND c.id = NEW.conversation_id;

    -- Both participants hear of the message (the sender's other tabs too), and a receiver whose
    -- archived conversation it brings back hears that next. What vechat.emit does event by
    -- event, here in one statement for all of them (one insert into the log, not two or three
    -- calls of a statement each): each participant's cursor advances by their number of events,
    -- participant 1's first -- the rows of VALUES are taken in order, so two writers lock two
    -- cursors in the same order, as vechat.emit's callers do -- and the events take the seqs
    -- their cursor advanced over, gapless as ever.
    WITH cursors AS (
        INSERT INTO public.vechat_event_cursors AS c (organisation_id, user_id, user_type, last_seq)
        VALUES (NEW.organisation_id, conv.participant1_id, conv.participant1_type,
                1 + (receiver_p1 AND unarchived)::integer),
               (NEW.organisation_id, conv.participant2_id, conv.participant2_type,
                1 + (NOT receiver_p1 AND unarchived)::integer)
        ON CONFLICT (organisation_id, user_type, user_id)
            DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq
        RETURNING c.user_id, c.user_type, c.last_seq,
                  ((c.user_id, c.user_type) = (NEW.receiver_id, NEW.receiver_type) AND unarchived)::integer
                      AS extra
    )
    INSERT INTO public.vechat_events
        (organisation_id, recipient_id, recipient_type, seq, event_type, conversation_id, message_id)
    SELECT NEW.organisation_id, k.user_id, k.user_type, k.last_seq - k.extra + e.ord, e.event_type,
           NEW.conversation_id, e.message_id
    FROM cursors k
    CROSS JOIN LATERAL (VALUES ('message.created', NEW.id, 0),
                               ('conversation.updated', NULL::bigint, 1)) AS e (event_type, message_id, ord)
    WHERE e.ord <= k.extra;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER vechat_messages_after_insert
    AFTER INSERT ON public.vechat_messages
    FOR EACH ROW EXECUTE FUNCTION vechat.messages_after_insert();

CREATE OR REPLACE FUNCTION vechat.messages_after_update() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    r record;
BEGIN
    -- Counters: the net change of unread messages per conversation and receiver.
    FOR r IN
        SELECT n.organisation_id, n.conversation_id, n.receiver_id, n.receiver_type,
               pg_catalog.sum((NOT n.is_read AND n.deleted_at IS NULL AND NOT n.is_deleted_by_receiver)::integer
                            - (NOT o.is_read AND o.deleted_at IS NULL AND NOT o.is_deleted_by_receiver)::integer) AS delta
        FROM new_rows n JOIN old_rows o ON o.organisation_id = n.organisation_id AND o.id = n.id
        GROUP BY n.organisation_id, n.conversation_id, n.receiver_id, n.receiver_type
        HAVING pg_catalog.sum((NOT n.is_read AND n.deleted_at IS NULL AND NOT n.is_deleted_by_receiver)::integer
                            - (NOT o.is_read AND o.deleted_at IS NULL AND NOT o.is_deleted_by_receiver)::integer) <> 0
        ORDER BY n.organisation_id, n.conversation_id
    LOOP
        UPDATE public.vechat_conversations c SET
            unread_count_participant1 = c.unread_count_participant1
                + CASE WHEN (c.participant1_id, c.participant1_type) = (r.receiver_id, r.receiver_type) THEN r.delta ELSE 0 END,
            unread_count_participant2 = c.unread_count_participant2
                + CASE WHEN (c.participant2_id, c.participant2_type) = (r.receiver_id, r.receiver_type) THEN r.delta ELSE 0 END,
            updated_at = pg_catalog.now()  -- vechat.conversations_guard skips nested updates
        WHERE c.organisation_id = r.organisation_id AND c.id = r.conversation_id;
    END LOOP;

    -- Edit history: every previous body is kept; deleting for everyone removes it with the body.
    INSERT INTO public.vechat_message_edits (organisation_id, message_id, previous_message, edited_at)
    SELECT n.organisation_id, n.id, o.message, n.edited_at
    FROM new_rows n JOIN old_rows o ON o.organisation_id = n.organisation_id AND o.id = n.id
    WHERE n.message IS DISTINCT FROM o.message AND n.deleted_at IS NULL AND o.message IS NOT NULL;
    DELETE FROM public.vechat_message_edits e
    USING new_rows n JOIN old_rows o ON o.organisation_id = n.organisation_id AND o.id = n.id
    WHERE n.deleted_at IS NOT NULL AND o.deleted_at IS NULL
      AND e.organisation_id = n.organisation_id AND e.message_id = n.id;

    -- Events, per recipient in (id, type) order and per recipient in message order.
    FOR r IN
        WITH changed AS (
            SELECT n.*, o.is_read AS was_read, o.deleted_at AS was_deleted_at, o.message AS old_message,
                   o.is_deleted_by_sender AS was_hidden_by_sender,
                   o.is_deleted_by_receiver AS was_hidden_by_receiver
            FROM new_rows n JOIN old_rows o ON o.organisation_id = n.organisation_id AND o.id = n.id
        ),
        content AS (
            SELECT c.*, CASE WHEN c.deleted_at IS NOT NULL AND c.was_deleted_at IS NULL
                             THEN 'message.deleted' ELSE 'message.updated' END AS event_type
            FROM changed c
            WHERE (c.deleted_at IS NOT NULL AND c.was_deleted_at IS NULL)
               OR c.message IS DISTINCT FROM c.old_message
        ),
        reads AS (
            SELECT c.organisation_id, c.conversation_id, c.receiver_id, c.receiver_type,
                   c.sender_id, c.sender_type,
                   pg_catalog.max(c.id) AS up_to_message_id, pg_catalog.max(c.read_at) AS read_at
            FROM changed c
            WHERE c.is_read AND NOT c.was_read
            GROUP BY c.organisation_id, c.conversation_id, c.receiver_id, c.receiver_type, c.sender_id, c.sender_type
        ),
        counted AS (
            SELECT DISTINCT c.organisation_id, c.conversation_id, c.receiver_id, c.receiver_type
            FROM changed c
            WHERE (NOT c.is_read AND c.deleted_at IS NULL AND NOT c.is_deleted_by_receiver)
               <> (NOT c.was_read AND c.was_deleted_at IS NULL AND NOT c.was_hidden_by_receiver)
        ),
        events AS (
            SELECT organisation_id, sender_id AS recipient_id, sender_type AS recipient_type, event_type,
                   conversation_id, id AS message_id, NULL::jsonb AS data, id AS ord
            FROM content
            UNION ALL
            SELECT organisation_id, receiver_id, receiver_type, event_type, conversation_id, id, NULL, id
            FROM content
            UNION ALL
            SELECT organisation_id, sender_id, sender_type, 'message.deleted', conversation_id, id, NULL, id
            FROM changed
            WHERE is_deleted_by_sender AND NOT was_hidden_by_sender AND NOT (deleted_at IS NOT NULL AND was_deleted_at IS NULL)
            UNION ALL
            SELECT organisation_id, receiver_id, receiver_type, 'message.deleted', conversation_id, id, NULL, id
            FROM changed
            WHERE is_deleted_by_receiver AND NOT was_hidden_by_receiver AND NOT (deleted_at IS NOT NULL AND was_deleted_at IS NULL)
            UNION ALL
            SELECT rd.organisation_id, t.recipient_id, t.recipient_type, 'messages.read', rd.conversation_id, NULL,
                   pg_catalog.jsonb_build_object(
                       'conversation_id', rd.conversation_id,
                       'reader', pg_catalog.jsonb_build_object('user_id', rd.receiver_id, 'user_type', rd.receiver_type),
                       'up_to_message_id', rd.up_to_message_id,
                       'read_at', rd.read_at),
                   9223372036854775806
            FROM reads rd
            LEFT JOIN public.vechat_user_settings s
                ON s.organisation_id = rd.organisation_id AND s.user_type = rd.receiver_type AND s.user_id = rd.receiver_id
            CROSS JOIN LATERAL (VALUES (rd.receiver_id, rd.receiver_type, true),
                                       (rd.sender_id, rd.sender_type, COALESCE(s.show_read_receipts, true)))
                AS t(recipient_id, recipient_type, wanted)
            WHERE t.wanted
            UNION ALL
            SELECT organisation_id, receiver_id, receiver_type, 'conversation.updated', conversation_id, NULL, NULL,
                   9223372036854775807
            FROM counted
        )
        SELECT * FROM events ORDER BY recipient_id, recipient_type, ord, conversation_id
    LOOP
        PERFORM vechat.emit(r.organisation_id, r.recipient_id, r.recipient_type, r.event_type,
                            r.conversation_id, r.message_id, r.data);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER vechat_messages_after_update
    AFTER UPDATE ON public.vechat_messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vechat.messages_after_update();

-- Maintenance: recompute both unread counters of conversations from their messages (used by the
-- legacy adoption, whose counters were double-counted, and by tests to prove the triggers exact).
CREATE OR REPLACE FUNCTION vechat.recount_unread(p_organisation_id bigint, p_conversation_id bigint DEFAULT NULL)
    RETURNS integer
    LANGUAGE sql
    SET search_path = ''
BEGIN ATOMIC
    WITH counts AS (
        SELECT c.organisation_id, c.id,
               (SELECT pg_catalog.count(*) FROM public.vechat_messages m
                WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
                  AND m.receiver_id = c.participant1_id AND m.receiver_type = c.participant1_type
                  AND NOT m.is_read AND m.deleted_at IS NULL AND NOT m.is_deleted_by_receiver) AS unread1,
               (SELECT pg_catalog.count(*) FROM public.vechat_messages m
                WHERE m.organisation_id = c.organisation_id AND m.conversation_id = c.id
                  AND m.receiver_id = c.participant2_id AND m.receiver_type = c.participant2_type
                  AND NOT m.is_read AND m.deleted_at IS NULL AND NOT m.is_deleted_by_receiver) AS unread2
        FROM public.vechat_conversations c
        WHERE c.organisation_id = p_organisation_id
          AND (p_conversation_id IS NULL OR c.id = p_conversation_id)
    ),
    fixed AS (
        UPDATE public.vechat_conversations c
        SET unread_count_participant1 = counts.unread1, unread_count_participant2 = counts.unread2
        FROM counts
        WHERE c.organisation_id = counts.organisation_id AND c.id = counts.id
          AND (c.unread_count_participant1, c.unread_count_participant2) IS DISTINCT FROM (counts.unread1, counts.unread2)
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer FROM fixed;
END;
COMMENT ON FUNCTION vechat.recount_unread(bigint, bigint) IS
    'Recomputes unread counters from the messages; returns how many conversations were wrong. Runs under the caller''s row-level security.';
