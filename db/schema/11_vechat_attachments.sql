-- db/schema/11_vechat_attachments.sql — uploaded files, bytes and all, under the same isolation

CREATE TABLE public.vechat_attachments (
    organisation_id bigint       NOT NULL,
    id              bigint       NOT NULL,
    uploader_id     bigint       NOT NULL,
    uploader_type   varchar(20)  NOT NULL,
    file_name       varchar(255) NOT NULL,
    file_type       varchar(100) NOT NULL,
    file_size       bigint       NOT NULL,
    sha256          char(64)     NOT NULL,
    data            bytea        NOT NULL,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT vechat_attachments_pkey PRIMARY KEY (organisation_id, id),
    -- The target of vechat_messages' attachment key: only the uploader can attach a file.
    CONSTRAINT vechat_attachments_organisation_id_id_uploader_id_uploader_type_key
        UNIQUE (organisation_id, id, uploader_id, uploader_type),
    CONSTRAINT vechat_attachments_uploader_type_check CHECK (uploader_type IN ('personnel', 'client')),
    CONSTRAINT vechat_attachments_file_size_check CHECK (file_size = octet_length(data))
);
-- Media is already compressed; EXTERNAL storage lets Range requests read a slice without
-- decompressing the whole value.
ALTER TABLE public.vechat_attachments ALTER COLUMN data SET STORAGE EXTERNAL;

COMMENT ON TABLE public.vechat_attachments IS
    'Uploaded files. Readable by the uploader and by participants of a conversation whose message carries it.';
COMMENT ON COLUMN public.vechat_attachments.file_type IS 'MIME type sniffed from the bytes, not taken from the client.';

CREATE INDEX vechat_attachments_organisation_id_uploader_type_uploader_id_idx
    ON public.vechat_attachments (organisation_id, uploader_type, uploader_id);
