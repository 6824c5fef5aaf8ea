-- db/schema/00_context.sql — schema vechat, extensions, and the tenant-context functions policies call

CREATE SCHEMA IF NOT EXISTS vechat;
COMMENT ON SCHEMA vechat IS
    'vechat-rls helpers: context functions, trigger functions, the migration ledger. No tenant data.';

-- unaccent is a trusted extension: the database owner's CREATE privilege is enough.
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA vechat;
