-- db/functions/00_context.sql — the signed tenant context: what the policies read, and who may set it
--
-- Settings (set_config, SET LOCAL) can be changed by any statement running as vechat_app, so the
-- policies no longer read them. They read vechat.context: the row of vechat.session_contexts for
-- this backend and this transaction, which only vechat.enter() writes, and only for a token the
-- service signed (HMAC-SHA256 with a key of vechat.context_keys, which vechat_app cannot read),
-- bound to this backend (pid and start time: copied to another connection it is refused), with a
-- short expiry and a counter that only goes up (entered once; an older token is refused). A row
-- of an earlier transaction or an earlier backend with the same pid matches nothing: no context,
-- no rows, no writes. Token and design: docs/design.md ("The signed context").
--
-- HMAC is built from the built-in sha256() (pgcrypto is not always there): the keys are stored
-- as their inner and outer pads, HMAC(k, m) = sha256(k ^ opad || sha256(k ^ ipad || m)).

CREATE OR REPLACE VIEW vechat.context WITH (security_invoker = true) AS
SELECT s.organisation_id, s.user_id, s.user_type, s.role
FROM vechat.session_contexts s
WHERE s.ctid = NULLIF(pg_catalog.current_setting('vechat.context_tid', true), '')::pg_catalog.tid
  AND s.pid = pg_catalog.pg_backend_pid() AND s.xact = pg_catalog.transaction_timestamp();
-- Where the row is: vechat.enter() leaves its tuple id in the transaction-local setting
-- vechat.context_tid, so every read is one tuple fetch (a TID scan), whatever the number of
-- backends' rows and dead versions in the table -- a sequential scan of them per policy read made
-- a send's ~90 context reads grow with the number of connections. The setting is only a hint:
-- anyone may set it, but a row counts only if it is this backend's and this transaction's, so a
-- forged tuple id finds nothing (no context) or the same row.
COMMENT ON VIEW vechat.context IS
    'The verified context of the current transaction (one row), or no row: what every policy compares with, as (SELECT ctx.organisation_id FROM vechat.context ctx). Only vechat.enter() (a signed token) and vechat.act_as() (the DBA) write it.';

-- For functions, the API's statements and tests; policies read the view directly (an initplan
-- planned with the statement). PL/pgSQL, not SQL: a SQL function that reads a view is not inlined,
-- and PostgreSQL planned its query afresh at nearly every call (~100 µs of a send's CPU for the
-- six calls it made, measured with pg_stat_statements); PL/pgSQL keeps the plan for the session.
-- No SET clause (it would cost a GUC save and restore per call): every name is qualified.
CREATE OR REPLACE FUNCTION vechat.current_organisation_id() RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN (SELECT c.organisation_id FROM vechat.context c); END $$;
COMMENT ON FUNCTION vechat.current_organisation_id() IS
    'Tenant of the current transaction from its signed context (vechat.context), NULL without one: no tenant means no rows.';

CREATE OR REPLACE FUNCTION vechat.current_user_id() RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN (SELECT c.user_id FROM vechat.context c); END $$;
COMMENT ON FUNCTION vechat.current_user_id() IS
    'User id of the current transaction''s signed context, NULL without one.';

CREATE OR REPLACE FUNCTION vechat.current_user_type() RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN (SELECT c.user_type FROM vechat.context c); END $$;
COMMENT ON FUNCTION vechat.current_user_type() IS
    'User type of the current transaction''s signed context (personnel or client), NULL without one.';

CREATE OR REPLACE FUNCTION vechat.current_role_name() RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN (SELECT c.role FROM vechat.context c); END $$;
COMMENT ON FUNCTION vechat.current_role_name() IS
    'Application role of the current transaction''s signed context (e.g. admin), NULL without one. Not a database role.';

-- HMAC-SHA256 of p_message with a valid key, hex; NULL for an unknown or retired key. Owner only
-- (policies/01_functions.sql): for vechat_app it would sign anything.
CREATE OR REPLACE FUNCTION vechat.context_mac(p_key_id text, p_message text) RETURNS text
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
SELECT pg_catalog.encode(pg_catalog.sha256(
           k.outer_pad || pg_catalog.sha256(k.inner_pad || pg_catalog.convert_to(p_message, 'UTF8'))),
       'hex')
FROM vechat.context_keys k
WHERE k.key_id = p_key_id AND k.retired_at IS NULL
$$;
COMMENT ON FUNCTION vechat.context_mac(text, text) IS
    'HMAC-SHA256 (hex) of a message with a valid context key; NULL for an unknown or retired key. Not for vechat_app.';

-- The first statement of every tenant transaction (db/transaction.py). The token is
--   v1|key_id|organisation_id|user_id|user_type|role|pid|backend_start_us|counter|expires_s|hmac
-- (role may be empty; backend_start in microseconds since the epoch, expires in seconds), the
-- HMAC over everything before its separator. Anything wrong raises: the transaction acts for
-- nobody and is aborted.
--
-- Two paths. The usual one is a single statement: the backend's row already holds the backend
-- start the token was signed for, checked by an earlier call against pg_stat_activity, and the
-- session key that call gave this backend (a random value in the row and in the backend's session
-- setting vechat.session_key); the row is updated if the MAC holds and the counter goes up. A row
-- left by an earlier backend with the same pid holds a key this backend was never given. Anything
-- else (a backend's first token, a key changed or reset by hand, a token that does not verify)
-- takes the full path, which reads the backend's start time and says what is wrong.
CREATE OR REPLACE FUNCTION vechat.enter(p_token text) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    f       text[] := pg_catalog.string_to_array(p_token, '|');
    v_hint  text;
    v_start timestamptz;
    v_tid   pg_catalog.tid;
    v_key   text;
BEGIN
    IF pg_catalog.cardinality(f) IS DISTINCT FROM 11 OR f[1] <> 'v1' THEN
        RAISE EXCEPTION 'vechat.enter: not a signed context' USING ERRCODE = '28000';
    END IF;
    -- The usual path: one statement (the HMAC of vechat.context_mac, inlined) holding every check
    -- of the full path below, for a token whose numbers are numbers (no cast in it can fail).
    IF p_token ~ '^v1\|[^|]+\|\d+\|\d+\|[a-z]+\|[^|]*\|\d+\|\d+\|\d+\|\d+\|' THEN
        UPDATE vechat.session_contexts AS s
        SET counter = f[9]::bigint, xact = pg_catalog.transaction_timestamp(),
            organisation_id = f[3]::bigint, user_id = f[4]::bigint, user_type = f[5],
            role = NULLIF(f[6], '')
        FROM vechat.context_keys AS k
        WHERE s.pid = pg_catalog.pg_backend_pid()
          AND f[7] = pg_catalog.pg_backend_pid()::text
          AND (EXTRACT(epoch FROM s.backend_start) * 1000000)::bigint = f[8]::bigint
          AND s.counter < f[9]::bigint
          AND s.session_key = pg_catalog.current_setting('vechat.session_key', true)
          AND f[10]::bigint >= EXTRACT(epoch FROM pg_catalog.clock_timestamp())
          AND k.key_id = f[2] AND k.retired_at IS NULL
          AND pg_catalog.encode(pg_catalog.sha256(k.outer_pad || pg_catalog.sha256(
                  k.inner_pad || pg_catalog.convert_to(pg_catalog.left(p_token, -65), 'UTF8'))),
                  'hex') = f[11]
        RETURNING pg_catalog.set_config('vechat.context_tid', s.ctid::text, true) INTO v_hint;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- The full path (once per backend: the MAC function's own call costs nothing that matters).
    IF vechat.context_mac(f[2], pg_catalog.left(p_token, -65)) IS DISTINCT FROM f[11] THEN
        RAISE EXCEPTION 'vechat.enter: bad signature or unknown key' USING ERRCODE = '28000';
    END IF;
    IF f[10]::bigint < EXTRACT(epoch FROM pg_catalog.clock_timestamp()) THEN
        RAISE EXCEPTION 'vechat.enter: the context has expired' USING ERRCODE = '28000';
    END IF;
    -- backend_start of another role's backend reads NULL unless the reader has that role's
    -- privileges: vechat_owner is granted vechat_app for this (policies/00_roles.sql).
    SELECT a.backend_start INTO v_start
    FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a;
    IF f[7]::integer <> pg_catalog.pg_backend_pid() OR v_start IS NULL
       OR (EXTRACT(epoch FROM v_start) * 1000000)::bigint <> f[8]::bigint THEN
        RAISE EXCEPTION 'vechat.enter: the context was signed for another connection'
            USING ERRCODE = '28000';
    END IF;
    IF f[3]::bigint <= 0 OR f[4]::bigint <= 0 OR f[5] NOT IN ('personnel', 'client')
       OR f[6] !~ '^[A-Za-z0-9_.:-]{0,64}$' THEN
        RAISE EXCEPTION 'vechat.enter: malformed context' USING ERRCODE = '28000';
    END IF;
    v_key := pg_catalog.gen_random_uuid()::text;
    INSERT INTO vechat.session_contexts AS s
        (pid, backend_start, counter, xact, organisation_id, user_id, user_type, role, session_key)
    VALUES (pg_catalog.pg_backend_pid(), v_start, f[9]::bigint, pg_catalog.transaction_timestamp(),
            f[3]::bigint, f[4]::bigint, f[5], NULLIF(f[6], ''), v_key)
    ON CONFLICT (pid) DO UPDATE
    SET backend_start = EXCLUDED.backend_start, counter = EXCLUDED.counter, xact = EXCLUDED.xact,
        organisation_id = EXCLUDED.organisation_id, user_id = EXCLUDED.user_id,
        user_type = EXCLUDED.user_type, role = EXCLUDED.role, session_key = EXCLUDED.session_key
    -- A row of an earlier backend with this pid says nothing about this one.
    WHERE s.backend_start <> EXCLUDED.backend_start OR s.counter < EXCLUDED.counter
    RETURNING s.ctid INTO v_tid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vechat.enter: the context was already used' USING ERRCODE = '28000';
    END IF;
    PERFORM pg_catalog.set_config('vechat.context_tid', v_tid::text, true);
    -- Session-wide: a rolled-back transaction takes it back with the row.
    PERFORM pg_catalog.set_config('vechat.session_key', v_key, false);
END
$$;
COMMENT ON FUNCTION vechat.enter(text) IS
    'Makes the transaction act for the context a signed token names, if the token is signed with a valid key, for this backend, not expired and newer than the last one entered here; raises otherwise.';

-- Nothing after this in the transaction acts for anyone (vechat.read_events ends with it).
CREATE OR REPLACE FUNCTION vechat.leave() RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
UPDATE vechat.session_contexts s
SET organisation_id = NULL, user_id = NULL, user_type = NULL, role = NULL
WHERE s.pid = pg_catalog.pg_backend_pid()
$$;
COMMENT ON FUNCTION vechat.leave() IS 'Ends the transaction''s context: it acts for nobody afterwards.';

-- The DBA's way to act as a user (tests, the demo's seed) and the auditor's (docs/auditing.md,
-- step 6): vechat_owner and vechat_auditor only, never vechat_app. A backend whose start time the
-- owner cannot read gets -infinity: a token entered later starts afresh either way.
CREATE OR REPLACE FUNCTION vechat.act_as(
    p_organisation_id bigint, p_user_id bigint, p_user_type text, p_role text DEFAULT NULL
) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
INSERT INTO vechat.session_contexts AS s
    (pid, backend_start, counter, xact, organisation_id, user_id, user_type, role)
SELECT pg_catalog.pg_backend_pid(), coalesce(a.backend_start, '-infinity'), 0,
       pg_catalog.transaction_timestamp(),
       p_organisation_id, p_user_id, p_user_type, p_role
FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a
ON CONFLICT (pid) DO UPDATE
SET backend_start = EXCLUDED.backend_start, xact = EXCLUDED.xact,
    counter = CASE WHEN s.backend_start = EXCLUDED.backend_start THEN s.counter ELSE 0 END,
    organisation_id = EXCLUDED.organisation_id, user_id = EXCLUDED.user_id,
    user_type = EXCLUDED.user_type, role = EXCLUDED.role
RETURNING pg_catalog.set_config('vechat.context_tid', s.ctid::text, true)
$$;
COMMENT ON FUNCTION vechat.act_as(bigint, bigint, text, text) IS
    'For DBAs and auditors (vechat_owner, vechat_auditor; never vechat_app): the transaction acts for this user without a signed token.';

-- Key management (docs/dba.md, "The context key"): owner only.
CREATE OR REPLACE FUNCTION vechat.add_context_key(p_key_id text, p_key bytea) RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = ''
AS $$
DECLARE
    v_key   bytea;
    v_inner bytea;
    v_outer bytea;
BEGIN
    IF pg_catalog.octet_length(p_key) NOT BETWEEN 32 AND 64 THEN
        RAISE EXCEPTION 'vechat.add_context_key: a key is 32 to 64 bytes' USING ERRCODE = '22023';
    END IF;
    v_key := p_key || pg_catalog.decode(pg_catalog.repeat('00', 64 - pg_catalog.octet_length(p_key)), 'hex');
    v_inner := v_key;
    v_outer := v_key;
    FOR i IN 0..63 LOOP
        v_inner := pg_catalog.set_byte(v_inner, i, pg_catalog.get_byte(v_key, i) # 54);  -- 0x36
        v_outer := pg_catalog.set_byte(v_outer, i, pg_catalog.get_byte(v_key, i) # 92);  -- 0x5c
    END LOOP;
    INSERT INTO vechat.context_keys (key_id, inner_pad, outer_pad) VALUES (p_key_id, v_inner, v_outer);
END
$$;
COMMENT ON FUNCTION vechat.add_context_key(text, bytea) IS
    'Adds a context key (32 to 64 random bytes) under a new key id; keys already there stay valid. Owner only.';

CREATE OR REPLACE FUNCTION vechat.retire_context_key(p_key_id text) RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = ''
AS $$
UPDATE vechat.context_keys k SET retired_at = pg_catalog.now()
WHERE k.key_id = p_key_id AND k.retired_at IS NULL
$$;
COMMENT ON FUNCTION vechat.retire_context_key(text) IS
    'Retires a context key: tokens and doorbells signed with it are refused from now on. Owner only.';

-- A doorbell the service's listeners can tell from a forged one, carrying no id at all:
--   d1|key_id|transaction time in ms|hmac   (HMAC over 'd1|key_id|ms|' || channel)
-- signed with the oldest valid key: during a rotation the processes not yet restarted know it.
-- The same payload all through a transaction, so NOTIFY folds it into one notification.
CREATE OR REPLACE FUNCTION vechat.doorbell(p_channel text) RETURNS text
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = ''
AS $$
SELECT m || '|' || vechat.context_mac(k.key_id, m || '|' || p_channel)
FROM (SELECT k.key_id FROM vechat.context_keys k WHERE k.retired_at IS NULL
      ORDER BY k.created_at, k.key_id LIMIT 1) AS k,
     LATERAL (SELECT 'd1|' || k.key_id || '|'
                     || (EXTRACT(epoch FROM pg_catalog.transaction_timestamp()) * 1000)::bigint) AS x(m)
$$;
COMMENT ON FUNCTION vechat.doorbell(text) IS
    'A signed doorbell for a channel (no organisation, user or conversation in it); NULL without a valid key. Owner only.';
