"""Per-user rate limits that hold across server processes: a fixed-window counter row in PostgreSQL.

One row per (organisation, user, action) in `public.vechat_rate_limits`, under RLS like every
tenant table. `hit()` bumps it with one `INSERT … ON CONFLICT DO UPDATE` inside the caller's own
tenant transaction, so it costs one statement and no extra transaction; the row lock serialises a
user's concurrent requests, so N processes cannot overshoot the limit; and a request that fails
afterwards rolls its hit back (only accepted work counts). Windows are aligned to multiples of
`window_s` since the epoch (a burst straddling two windows gets at most twice the limit).

Needs (db/schema, owned by vechat_owner; policies: organisation isolation + the caller's own row):

    CREATE TABLE public.vechat_rate_limits (
        organisation_id bigint      NOT NULL,
        user_type       varchar(20) NOT NULL,
        user_id         bigint      NOT NULL,
        action          text        NOT NULL,
        window_start    timestamptz NOT NULL,
        hits            integer     NOT NULL,
        CONSTRAINT vechat_rate_limits_pkey PRIMARY KEY (organisation_id, user_type, user_id, action)
    );
    GRANT SELECT, INSERT, UPDATE ON public.vechat_rate_limits TO vechat_app;
"""

from __future__ import annotations

import math

from vechat_rls import db
from vechat_rls.chat.errors import RateLimited

# visibility: vechat_rate_limits policies — the row of the transaction's own user only.
HIT_SQL = """
INSERT INTO public.vechat_rate_limits AS r
    (organisation_id, user_type, user_id, action, window_start, hits)
VALUES ((SELECT vechat.current_organisation_id()), (SELECT vechat.current_user_type()),
        (SELECT vechat.current_user_id()), $1,
        to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1)
ON CONFLICT (organisation_id, user_type, user_id, action) DO UPDATE
SET window_start = EXCLUDED.window_start,
    hits = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.hits + 1 ELSE 1 END
RETURNING hits,
          extract(epoch FROM r.window_start + make_interval(secs => $2) - now())::float8 AS reset_in
"""


async def hit(conn: db.Transaction, action: str, *, limit: int, window_s: int = 60) -> int:
    """Count one `action` for the transaction's user; `RateLimited` (429) past `limit`.

    Call it inside the request's tenant transaction, before the work it limits. Returns the
    number of hits in the current window, this one included.
    """
    row = await conn.fetchrow(HIT_SQL, action, float(window_s))
    assert row is not None
    if row["hits"] > limit:
        raise RateLimited(
            retry_after=math.ceil(row["reset_in"]),
            detail=f"rate limit of {limit} {action} per {window_s} s exceeded",
        )
    return int(row["hits"])
