-- db/schema/10_vechat_contacts.sql — the organisation's directory: who may talk to whom

CREATE TABLE public.vechat_contacts (
    organisation_id    bigint      NOT NULL,
    user_id            bigint      NOT NULL,
    user_type          varchar(20) NOT NULL,
    display_name       text        NOT NULL DEFAULT '',
    email              text,
    avatar_url         text,
    role               text,
    active             boolean     NOT NULL DEFAULT true,
    assigned_personnel bigint[]    NOT NULL DEFAULT '{}',
    search_text        text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vechat_contacts_pkey PRIMARY KEY (organisation_id, user_type, user_id),
    CONSTRAINT vechat_contacts_user_type_check CHECK (user_type IN ('personnel', 'client')),
    CONSTRAINT vechat_contacts_user_id_check CHECK (user_id > 0),
    CONSTRAINT vechat_contacts_organisation_id_check CHECK (organisation_id > 0)
);
COMMENT ON TABLE public.vechat_contacts IS
    'Directory of one organisation''s chat users, synced by the ERP (PUT /contacts) or created on first use from the token.';
COMMENT ON COLUMN public.vechat_contacts.assigned_personnel IS
    'For a client: user ids of the personnel assigned to it. Empty = the client may talk to personnel whose role is commercial.';
COMMENT ON COLUMN public.vechat_contacts.search_text IS
    'lower(unaccent(display_name || email)), kept by a trigger: the contact search is case- and accent-insensitive.';

CREATE INDEX vechat_contacts_organisation_id_user_type_role_idx
    ON public.vechat_contacts (organisation_id, user_type, role);

CREATE INDEX vechat_contacts_organisation_id_display_name_idx
    ON public.vechat_contacts (organisation_id, display_name, user_type, user_id);
