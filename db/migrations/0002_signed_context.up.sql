-- db/migrations/0002_signed_context.up.sql — signed tenant contexts and per-organisation ids
--
-- The policies no longer trust a setting anyone may change: they read the transaction's context
-- from vechat.session_contexts, which only vechat.enter() writes, after checking a signature made
-- with a key stored here and unreadable by vechat_app (docs/design.md, "The signed context").
-- Ids of messages, conversations, attachments and edits come from one counter per organisation
-- instead of one sequence per table shared by every organisation, so their gaps reveal nothing of
-- another organisation's activity (docs/design.md, "Ids").

CREATE TABLE vechat.context_keys (
    key_id     text        NOT NULL,
    inner_pad  bytea       NOT NULL,
    outer_pad  bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    CONSTRAINT context_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT context_keys_key_id_check CHECK (key_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    CONSTRAINT context_keys_inner_pad_check CHECK (octet_length(inner_pad) = 64),
    CONSTRAINT context_keys_outer_pad_check CHECK (octet_length(outer_pad) = 64)
);
COMMENT ON TABLE vechat.context_keys IS
    'Keys that sign tenant contexts (HMAC-SHA256, stored as the key XOR ipad / opad). Owner only: vechat_app can neither read nor change them. Several may be valid at once (rotation); a retired key signs nothing.';

CREATE UNLOGGED TABLE vechat.session_contexts (
    pid             integer     NOT NULL,
    backend_start   timestamptz NOT NULL,
    counter         bigint      NOT NULL,
    xact            timestamptz NOT NULL,
    organisation_id bigint,
    user_id         bigint,
    user_type       text,
    role            text,
    CONSTRAINT session_contexts_pkey PRIMARY KEY (pid)
);
COMMENT ON TABLE vechat.session_contexts IS
    'The verified tenant context of each backend''s current transaction, written only by vechat.enter() (and vechat.act_as() for DBAs). A row counts only while pid = pg_backend_pid() and xact = transaction_timestamp(): a row left by an earlier transaction, or by an earlier backend with the same pid, acts for nobody. Unlogged: nothing in it outlives a connection.';
COMMENT ON COLUMN vechat.session_contexts.counter IS
    'The counter of the last token entered on this backend: a token is accepted once, and only if its counter is higher.';

CREATE TABLE vechat.id_counters (
    organisation_id bigint NOT NULL,
    kind            text   NOT NULL,
    last_id         bigint NOT NULL,
    CONSTRAINT id_counters_pkey PRIMARY KEY (organisation_id, kind),
    CONSTRAINT id_counters_kind_check
        CHECK (kind IN ('message', 'conversation', 'attachment', 'message_edit'))
);
COMMENT ON TABLE vechat.id_counters IS
    'The last id given to a row of each kind, per organisation (vechat.assign_id). Owner only.';

-- The four tables whose ids users receive stop taking ids from a sequence shared by every
-- organisation (its gaps counted the others' rows); vechat.assign_id gives them instead.
ALTER TABLE public.vechat_messages ALTER COLUMN id DROP IDENTITY;
ALTER TABLE public.vechat_conversations ALTER COLUMN id DROP IDENTITY;
ALTER TABLE public.vechat_attachments ALTER COLUMN id DROP IDENTITY;
ALTER TABLE public.vechat_message_edits ALTER COLUMN id DROP IDENTITY;

-- Organisations that already have rows (an adopted legacy database, or one migrated before this)
-- keep counting after their highest id, so new ids sort after theirs and fit the legacy columns.
-- Row-level security is forced on these tables, for the owner too: switched off for this
-- transaction only, to count every organisation's rows.
ALTER TABLE public.vechat_messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_attachments NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_message_edits NO FORCE ROW LEVEL SECURITY;
INSERT INTO vechat.id_counters (organisation_id, kind, last_id)
SELECT organisation_id, 'message', max(id) FROM public.vechat_messages GROUP BY organisation_id
UNION ALL
SELECT organisation_id, 'conversation', max(id) FROM public.vechat_conversations GROUP BY organisation_id
UNION ALL
SELECT organisation_id, 'attachment', max(id) FROM public.vechat_attachments GROUP BY organisation_id
UNION ALL
SELECT organisation_id, 'message_edit', max(id) FROM public.vechat_message_edits GROUP BY organisation_id;
ALTER TABLE public.vechat_messages FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_attachments FORCE ROW LEVEL SECURITY;
ALTER TABLE public.vechat_message_edits FORCE ROW LEVEL SECURITY;
