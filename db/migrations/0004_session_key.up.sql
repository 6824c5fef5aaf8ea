-- db/migrations/0004_session_key.up.sql — what lets vechat.enter trust a backend's own row

-- A random value vechat.enter gives a backend the first time it checks the backend's start time
-- (pg_stat_activity), kept in the row and in the backend's session setting vechat.session_key.
-- Later tokens for the same backend are entered in one statement as long as both still agree:
-- a row left by an earlier backend with the same pid holds a key this backend was never given.
-- Changing or resetting the setting only sends the next token through the full check again.
ALTER TABLE vechat.session_contexts ADD COLUMN session_key text;
COMMENT ON COLUMN vechat.session_contexts.session_key IS
    'A random value given to the backend that wrote the row (also its setting vechat.session_key): vechat.enter skips re-reading the backend start time while both agree.';
