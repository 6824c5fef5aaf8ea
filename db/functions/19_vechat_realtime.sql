-- db/functions/19_vechat_realtime.sql — what the realtime hub runs: batched event reads, connection leases, pruning
--
-- The hub of each server process serves many users of one organisation at once. Reading every
-- user's events in their own transaction would cost a round trip per user per wake-up; these
-- functions act for several users in one call instead, each statement under that user's own
-- signed context (vechat.enter with a token the caller signed for each of them, for this
-- connection), so the policies decide what each of them sees exactly as they would in a
-- transaction of their own, and a caller without the service's key acts for nobody.
-- Every limit and duration they take is checked: out of range raises (SQLSTATE 22023).

-- The events of several recipients after the seq each has already received, each recipient's rows
-- read under their own context (policy vechat_events_select_recipient), in one statement: the hub
-- calls it outside any transaction (the statement is its own) with every user a wake-up found
-- dirty, so a wake-up costs one round trip however many users and organisations it serves. Each
-- recipient comes with a token the hub signed for them on this connection
-- ([[organisation_id, user_type, user_id, since, token], ...], tokens in the order signed), and
-- is read after vechat.enter(token): the function can act for nobody the caller could not.
-- Recipients whose event cursor is not beyond their `since` are skipped with one index lookup (a
-- doorbell that names only the organisation marks every local user). A message event comes with
-- its message and the message it replies to as whole rows read in the recipient's context
-- (vechat_messages_select_participant; NULL when they cannot see it), and whether its receiver
-- shows read receipts (the rule of RECEIPTS_SHOWN in src/vechat_rls/api/messages.py; NULL while
-- the message has no read_at, so there is nothing to show or hide). The caller maps those rows
-- with the HTTP API's own mapping. It ends with vechat.leave(): nothing after this call in the
-- transaction acts for anyone.
CREATE OR REPLACE FUNCTION vechat.read_events(p_recipients jsonb, p_limit integer DEFAULT 1000)
    RETURNS TABLE (organisation_id bigint, recipient_type text, recipient_id bigint, seq bigint,
                   event_type text, conversation_id bigint, message_id bigint, data jsonb,
                   created_at timestamptz, message public.vechat_messages,
                   reply_to public.vechat_messages, receipts_shown boolean)
    LANGUAGE plpgsql
    SET search_path = ''
    -- Generic plans, made once per connection. With the default (auto), the events query's
    -- custom plan for `seq > <since>` looks cheaper than the generic one as a recipient's history
    -- grows, so every recipient of every call was planned afresh: 240 us per recipient with 1,000
    -- messages per conversation against 30 us (bench/read_events.py --pairs 50 --messages 1000).
    -- Every statement here is a lookup by primary key whatever the values.
    SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    r record;
    x record;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'vechat.read_events: p_limit must be in 1..1000000' USING ERRCODE = '22023';
    END IF;
    FOR r IN
        SELECT (x.value ->> 0)::bigint AS organisation_id, x.value ->> 1 AS user_type,
               (x.value ->> 2)::bigint AS user_id, (x.value ->> 3)::bigint AS since,
               x.value ->> 4 AS token
        FROM pg_catalog.jsonb_array_elements(p_recipients) WITH ORDINALITY AS x(value, n)
        ORDER BY x.n
    LOOP
        IF r.since IS NULL OR r.since < 0 THEN
            RAISE EXCEPTION 'vechat.read_events: since must be 0 or more' USING ERRCODE = '22023';
        END IF;
        PERFORM vechat.enter(r.token);
        IF NOT EXISTS (SELECT 1 FROM vechat.context c
                       WHERE c.organisation_id = r.organisation_id AND c.user_type = r.user_type
                         AND c.user_id = r.user_id) THEN
            RAISE EXCEPTION 'vechat.read_events: a token for another recipient' USING ERRCODE = '28000';
        END IF;
        -- vechat_event_cursors_select_organisation: readable in the organisation, whoever acts.
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM public.vechat_event_cursors c
            WHERE c.user_type = r.user_type AND c.user_id = r.user_id AND c.last_seq > r.since);
        -- Each message by primary key, in a subquery run per event: the plan cannot turn into a
        -- scan of the recipient's messages, whatever the statistics say. The message it replies
        -- to, and whether its receiver shows read receipts, only when the event needs them:
        -- a statement of their own each, started only then. Subqueries in this query would be
        -- set up for every recipient whether they run or not -- ~6 us of a recipient's ~30
        -- (bench/read_events.py), for what a new message without a reply never needs.
        FOR x IN
            SELECT e.*,
                   (SELECT m FROM public.vechat_messages m
                    WHERE m.organisation_id = e.organisation_id AND m.id = e.message_id
                      AND e.event_type IN ('message.created', 'message.updated',
                                           'message.deleted')) AS m
            FROM public.vechat_events e
            WHERE e.recipient_type = r.user_type AND e.recipient_id = r.user_id
              AND e.seq > r.since
            ORDER BY e.seq
            LIMIT p_limit
        LOOP
            organisation_id := x.organisation_id;
            recipient_type := x.recipient_type;
            recipient_id := x.recipient_id;
            seq := x.seq;
            event_type := x.event_type;
            conversation_id := x.conversation_id;
            message_id := x.message_id;
            data := x.data;
            created_at := x.created_at;
            message := x.m;
            reply_to := NULL;
            receipts_shown := NULL;
            IF (x.m).reply_to_message_id IS NOT NULL THEN
                SELECT rt.* INTO reply_to FROM public.vechat_messages rt
                WHERE rt.organisation_id = x.organisation_id
                  AND rt.id = (x.m).reply_to_message_id;
            END IF;
            -- Asked only where a read_at is there to show or hide.
            IF (x.m).read_at IS NOT NULL THEN
                receipts_shown := coalesce(
                    (SELECT p.show_read_receipts FROM public.vechat_presence p
                     WHERE p.organisation_id = x.organisation_id
                       AND p.user_type = (x.m).receiver_type
                       AND p.user_id = (x.m).receiver_id),
                    true);
            END IF;
            RETURN NEXT;
        END LOOP;
    END LOOP;
    PERFORM vechat.leave();
END
$$;
COMMENT ON FUNCTION vechat.read_events(jsonb, integer) IS
    'Events of several recipients ([[organisation_id, user_type, user_id, since, token], ...]) with seq > since, at most p_limit (1..1000000) each, each read under that recipient''s signed context (vechat.enter(token)); message events come with the message, the message it replies to (as that recipient sees them; NULL when not visible) and whether its receiver shows read receipts (NULL while the message has no read_at). Ends acting for nobody.';

-- A server process's connection leases, for several users of the caller's organisation at once:
-- [[user_type, user_id, sockets, token]], each user's statements after vechat.enter(token).
-- sockets > 0 creates or renews the lease (expires_at = now() + p_lease_s); 0 removes it. A user
-- who had no live lease anywhere and now has one comes online; one whose last live lease goes
-- comes offline (last_seen = now()). Returns, for each user, that change -- unless the user hides
-- their presence (show_online_status = false): then there is nothing others may see and change is
-- NULL. The caller rings vechat_presence for them after its commit (realtime/leases.py).
CREATE OR REPLACE FUNCTION vechat.set_leases(p_server_id text, p_lease_s integer, p_users jsonb)
    RETURNS TABLE (user_type text, user_id bigint, change text)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    r         record;
    v_org     bigint := vechat.current_organisation_id();
    v_live    boolean;
    v_shown   boolean;
BEGIN
    IF p_lease_s IS NULL OR p_lease_s NOT BETWEEN 1 AND 3600 THEN
        RAISE EXCEPTION 'vechat.set_leases: p_lease_s must be in 1..3600' USING ERRCODE = '22023';
    END IF;
    IF v_org IS NULL THEN
        RAISE EXCEPTION 'vechat.set_leases: the transaction acts for nobody' USING ERRCODE = '28000';
    END IF;
    FOR r IN
        SELECT x.value ->> 0 AS user_type, (x.value ->> 1)::bigint AS user_id,
               (x.value ->> 2)::integer AS sockets, x.value ->> 3 AS token
        FROM pg_catalog.jsonb_array_elements(p_users) WITH ORDINALITY AS x(value, n)
        ORDER BY x.n
    LOOP
        IF r.sockets IS NULL OR r.sockets NOT BETWEEN 0 AND 100000 THEN
            RAISE EXCEPTION 'vechat.set_leases: sockets must be in 0..100000' USING ERRCODE = '22023';
        END IF;
        PERFORM vechat.enter(r.token);
        IF NOT EXISTS (SELECT 1 FROM vechat.context c
                       WHERE c.organisation_id = v_org AND c.user_type = r.user_type
                         AND c.user_id = r.user_id) THEN
            RAISE EXCEPTION 'vechat.set_leases: a token for another user' USING ERRCODE = '28000';
        END IF;
        user_type := r.user_type;
        user_id := r.user_id;
        change := NULL;
        v_shown := NULL;
        SELECT EXISTS (SELECT 1 FROM public.vechat_presence_connections c
                       WHERE c.user_type = r.user_type AND c.user_id = r.user_id
                         AND c.expires_at > pg_catalog.now() AND c.sockets > 0)
            INTO v_live;
        IF r.sockets > 0 THEN
            INSERT INTO public.vechat_presence_connections AS c
                (organisation_id, user_id, user_type, server_id, sockets, expires_at)
            VALUES (v_org, r.user_id, r.user_type, p_server_id, r.sockets,
                    pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_s))
            ON CONFLICT (organisation_id, user_type, user_id, server_id)
            DO UPDATE SET sockets = EXCLUDED.sockets, expires_at = EXCLUDED.expires_at;
            -- last_seen follows the lease, so a process killed with -9 leaves it at most one
            -- renewal behind. Coming online resets a chosen away/busy to online. updated_at is
            -- the heartbeat of a status set over HTTP (presence_view keeps such a status for
            -- 60 s after it): a connection is not one, so it is never touched here, and a row
            -- created here has had no status set over HTTP at all (-infinity).
            INSERT INTO public.vechat_presence AS p (organisation_id, user_id, user_type, status,
                                                     last_seen, connected_at, updated_at)
            VALUES (v_org, r.user_id, r.user_type, 'online', pg_catalog.now(), pg_catalog.now(),
                    '-infinity')
            ON CONFLICT (organisation_id, user_type, user_id) DO UPDATE
            SET last_seen = pg_catalog.now(),
                status = CASE WHEN v_live THEN p.status ELSE 'online' END,
                connected_at = CASE WHEN v_live THEN p.connected_at ELSE pg_catalog.now() END
            RETURNING p.show_online_status INTO v_shown;
            IF NOT v_live THEN
                change := 'online';
            END IF;
        ELSE
            DELETE FROM public.vechat_presence_connections c
            WHERE c.user_type = r.user_type AND c.user_id = r.user_id AND c.server_id = p_server_id;
            IF NOT EXISTS (SELECT 1 FROM public.vechat_presence_connections c
                           WHERE c.user_type = r.user_type AND c.user_id = r.user_id
                             AND c.expires_at > pg_catalog.now() AND c.sockets > 0) THEN
                UPDATE public.vechat_presence p SET status = 'offline', last_seen = pg_catalog.now()
                WHERE p.user_type = r.user_type AND p.user_id = r.user_id
                RETURNING p.show_online_status INTO v_shown;
                IF v_live THEN
                    change := 'offline';
                END IF;
            END IF;
        END IF;
        IF NOT coalesce(v_shown, true) THEN
            change := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION vechat.set_leases(text, integer, jsonb) IS
    'Creates, renews (sockets > 0) or removes (0) one server process''s connection leases for several users of the organisation ([[user_type, user_id, sockets, token]]), each under their own signed context; returns who came online or went offline where others may see it (the caller rings vechat_presence).';

-- Leases of dead processes: anyone of the organisation may delete expired ones (policy
-- vechat_presence_connections_delete_self_or_expired). Users left without a live lease went
-- offline when their process died; they are returned, and the caller rings vechat_presence for
-- them after its commit (a NOTIFY payload here would name them to every listening login).
CREATE OR REPLACE FUNCTION vechat.sweep_leases()
    RETURNS TABLE (user_type text, user_id bigint)
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH swept AS (
            DELETE FROM public.vechat_presence_connections c
            WHERE c.expires_at < pg_catalog.now()
            RETURNING c.organisation_id, c.user_type, c.user_id
        )
        SELECT DISTINCT s.organisation_id, s.user_type::text AS user_type, s.user_id
        FROM swept s
        WHERE NOT EXISTS (SELECT 1 FROM public.vechat_presence_connections l
                          WHERE l.organisation_id = s.organisation_id AND l.user_type = s.user_type
                            AND l.user_id = s.user_id AND l.expires_at > pg_catalog.now()
                            AND l.sockets > 0)
          AND coalesce((SELECT p.show_online_status FROM public.vechat_presence p
                        WHERE p.organisation_id = s.organisation_id AND p.user_type = s.user_type
                          AND p.user_id = s.user_id), true)
        ORDER BY 1, 2, 3
    LOOP
        user_type := r.user_type;
        user_id := r.user_id;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION vechat.sweep_leases() IS
    'Deletes the expired connection leases of the transaction''s organisation; returns the users left without a live lease who show their presence (the caller rings vechat_presence for them).';

-- Retention, run when a user connects: delete the user's own events older than p_retention_s in
-- one statement and advance pruned_seq. Writers are not blocked: the delete touches only old rows
-- (writers append new ones), and the cursor row -- which writers lock to take the next seq -- is
-- updated last, so it is locked only from that update to the commit that follows.
CREATE OR REPLACE FUNCTION vechat.prune_own_events(p_retention_s integer) RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    v_me_id   bigint := vechat.current_user_id();
    v_me_type text   := vechat.current_user_type();
    v_upto    bigint;
    v_pruned  bigint;
BEGIN
    IF p_retention_s IS NULL OR p_retention_s NOT BETWEEN 60 AND 315360000 THEN
        RAISE EXCEPTION 'vechat.prune_own_events: p_retention_s must be in 60..315360000 (ten years)'
            USING ERRCODE = '22023';
    END IF;
    -- The newest event older than the retention; seq order and created_at order agree up to
    -- transactions that overlapped, which is close enough for a retention mark.
    SELECT e.seq INTO v_upto
    FROM public.vechat_events e
    WHERE e.recipient_type = v_me_type AND e.recipient_id = v_me_id
      AND e.created_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_retention_s)
    ORDER BY e.seq DESC
    LIMIT 1;
    IF v_upto IS NOT NULL THEN
        DELETE FROM public.vechat_events e
        WHERE e.recipient_type = v_me_type AND e.recipient_id = v_me_id AND e.seq <= v_upto;
        UPDATE public.vechat_event_cursors c SET pruned_seq = GREATEST(c.pruned_seq, v_upto)
        WHERE c.user_type = v_me_type AND c.user_id = v_me_id;
    END IF;
    SELECT c.pruned_seq INTO v_pruned FROM public.vechat_event_cursors c
    WHERE c.user_type = v_me_type AND c.user_id = v_me_id;
    RETURN coalesce(v_pruned, 0);
END
$$;
COMMENT ON FUNCTION vechat.prune_own_events(integer) IS
    'Deletes the calling user''s events older than p_retention_s seconds (60..315360000, else it raises) and advances their pruned_seq; returns pruned_seq. Runs as vechat_owner but row-level security (forced) keeps it to the transaction''s own user.';

-- Retention for users who never connect: the DBA runs, as a superuser (row-level security does
-- not apply to it), e.g. nightly:  SELECT vechat.prune_events(604800);

-- vechat_app cannot: it holds no DELETE on vechat_events, and this function runs with the
-- caller's rights.
CREATE OR REPLACE FUNCTION vechat.prune_events(p_retention_s integer) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    v_deleted bigint;
BEGIN
    IF p_retention_s IS NULL OR p_retention_s NOT BETWEEN 60 AND 315360000 THEN
        RAISE EXCEPTION 'vechat.prune_events: p_retention_s must be in 60..315360000 (ten years)'
            USING ERRCODE = '22023';
    END IF;
    WITH deleted AS (
        DELETE FROM public.vechat_events e
        WHERE e.created_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_retention_s)
        RETURNING e.organisation_id, e.recipient_type, e.recipient_id, e.seq
    ),
    marks AS (
        SELECT d.organisation_id, d.recipient_type, d.recipient_id, pg_catalog.max(d.seq) AS upto,
               pg_catalog.count(*) AS n
        FROM deleted d
        GROUP BY d.organisation_id, d.recipient_type, d.recipient_id
    ),
    advanced AS (
        UPDATE public.vechat_event_cursors c SET pruned_seq = GREATEST(c.pruned_seq, m.upto)
        FROM marks m
        WHERE c.organisation_id = m.organisation_id AND c.user_type = m.recipient_type
          AND c.user_id = m.recipient_id
        RETURNING 1
    )
    SELECT coalesce(pg_catalog.sum(m.n), 0)::bigint INTO v_deleted FROM marks m;
    RETURN v_deleted;
END
$$;
COMMENT ON FUNCTION vechat.prune_events(integer) IS
    'Maintenance, for a superuser: deletes every event older than p_retention_s seconds (60..315360000, else it raises) and advances pruned_seq; returns how many were deleted. Run it for users who never connect (connecting prunes one''s own).';
