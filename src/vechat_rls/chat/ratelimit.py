"""Per-user rate limits that hold across server processes: a fixed-window counter row in PostgreSQL.

One row per (organisation, user, action) in `public.vechat_rate_limits`, bumped by `hit()` with
one statement inside the caller's own tenant transaction: its row lock serialises a user's
concurrent requests across processes, and a request that fails afterwards rolls its hit back.
Windows are aligned to multiples of `window_s` since the epoch.
"""

from __future__ import annotations

import math

from vechat_rls import db
from vechat_rls.chat.errors import RateLimited

# visibility: vechat_rate_limits policies — the row of the transaction's own user only.
HIT_SQL = """
INSERT INTO public.vechat_rate_limits AS r
    (organisation_id, user_type, user_id, action, window_start, hits)
SELECT ctx.organisation_id, ctx.user_type, ctx.user_id, $1,
       to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1
FROM vechat.context ctx
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
