-- db/schema/01_signed_context.sql — signing keys, verified contexts, per-organisation id sequences

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
    session_key     text,
    CONSTRAINT session_contexts_pkey PRIMARY KEY (pid)
);
COMMENT ON TABLE vechat.session_contexts IS
    'The verified tenant context of each backend''s current transaction, written only by vechat.enter() (and vechat.act_as() for DBAs). A row counts only while pid = pg_backend_pid() and xact = transaction_timestamp(): a row left by an earlier transaction, or by an earlier backend with the same pid, acts for nobody. Unlogged: nothing in it outlives a connection.';
COMMENT ON COLUMN vechat.session_contexts.session_key IS
    'A random value given to the backend that wrote the row (also its setting vechat.session_key): vechat.enter skips re-reading the backend start time while both agree.';
COMMENT ON COLUMN vechat.session_contexts.counter IS
    'The counter of the last token entered on this backend: a token is accepted once, and only if its counter is higher.';

CREATE TABLE vechat.id_sequences (
    organisation_id bigint   NOT NULL,
    kind            text     NOT NULL,
    sequence_name   text     NOT NULL,
    CONSTRAINT id_sequences_pkey PRIMARY KEY (organisation_id, kind),
    CONSTRAINT id_sequences_sequence_name_key UNIQUE (sequence_name),
    CONSTRAINT id_sequences_kind_check
        CHECK (kind IN ('message', 'conversation', 'attachment', 'message_edit'))
);
COMMENT ON TABLE vechat.id_sequences IS
    'The sequence (in schema vechat) that gives the ids of each kind of each organisation (vechat.assign_id). Owner only.';
