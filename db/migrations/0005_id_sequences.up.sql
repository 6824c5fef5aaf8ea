-- db/migrations/0005_id_sequences.up.sql — each organisation's ids from its own sequences
--
-- 0002's counter rows (vechat.id_counters) were locked from an insert to its commit, so an
-- organisation's sends queued behind each other for the length of a commit (every lock wait of
-- more than 5 ms in the realtime benchmark was on them). A sequence hands out a number without a
-- lock held to the commit. One sequence per organisation and kind, under an opaque name (the
-- names are in the catalog, which every login reads; which organisation a sequence counts for is
-- in vechat.id_sequences, owner only). Each continues after its counter.

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
REVOKE ALL ON vechat.id_sequences FROM PUBLIC;

DO $convert$
DECLARE
    r      record;
    v_name text;
BEGIN
    FOR r IN SELECT organisation_id, kind, last_id FROM vechat.id_counters
             ORDER BY organisation_id, kind LOOP
        v_name := 'ids_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
        EXECUTE pg_catalog.format(
            'CREATE SEQUENCE vechat.%I AS bigint MINVALUE 1 MAXVALUE 9007199254740991 START WITH %s',
            v_name, r.last_id);
        PERFORM pg_catalog.setval(pg_catalog.format('vechat.%I', v_name)::regclass, r.last_id, true);
        EXECUTE pg_catalog.format('REVOKE ALL ON SEQUENCE vechat.%I FROM PUBLIC', v_name);
        INSERT INTO vechat.id_sequences (organisation_id, kind, sequence_name)
        VALUES (r.organisation_id, r.kind, v_name);
    END LOOP;
END
$convert$;

DROP TABLE vechat.id_counters;
