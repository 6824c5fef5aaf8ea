-- db/schema/17_vechat_rate_limits.sql — per-user request counters that hold across server processes

CREATE TABLE public.vechat_rate_limits (
    organisation_id bigint      NOT NULL,
    user_type       varchar(20) NOT NULL,
    user_id         bigint      NOT NULL,
    action          varchar(40) NOT NULL,
    window_start    timestamptz NOT NULL,
    hits            integer     NOT NULL,
    CONSTRAINT vechat_rate_limits_pkey PRIMARY KEY (organisation_id, user_type, user_id, action),
    CONSTRAINT vechat_rate_limits_user_type_check CHECK (user_type IN ('personnel', 'client')),
    CONSTRAINT vechat_rate_limits_hits_check CHECK (hits >= 0)
);
COMMENT ON TABLE public.vechat_rate_limits IS
    'Fixed-window rate-limit counters (api/ratelimit.py): one row per user and action, bumped in the request''s own transaction, so a rejected request does not count.';
