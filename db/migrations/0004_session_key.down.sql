-- db/migrations/0004_session_key.down.sql — the context rows without the session key
--
-- vechat.enter of this release reads the column: below 0004 it raises, so no transaction acts for
-- anyone (fail closed) until `db migrate` of the release being returned to applies its own.
ALTER TABLE vechat.session_contexts DROP COLUMN session_key;
