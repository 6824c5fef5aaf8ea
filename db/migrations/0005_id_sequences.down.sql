-- db/migrations/0005_id_sequences.down.sql — back to 0002's counter rows
--
-- vechat.assign_id of this release reads vechat.id_sequences: below 0005 an insert that needs an
-- id raises until `db migrate` of the release being returned to applies its own.

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
REVOKE ALL ON vechat.id_counters FROM PUBLIC;

DO $convert$
DECLARE
    r      record;
    v_last bigint;
BEGIN
    FOR r IN SELECT organisation_id, kind, sequence_name FROM vechat.id_sequences LOOP
        EXECUTE pg_catalog.format(
            'SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM vechat.%I',
            r.sequence_name) INTO v_last;
        INSERT INTO vechat.id_counters (organisation_id, kind, last_id)
        VALUES (r.organisation_id, r.kind, v_last);
        EXECUTE pg_catalog.format('DROP SEQUENCE vechat.%I', r.sequence_name);
    END LOOP;
END
$convert$;

DROP TABLE vechat.id_sequences;
DROP FUNCTION IF EXISTS vechat.id_sequence(bigint, text);
