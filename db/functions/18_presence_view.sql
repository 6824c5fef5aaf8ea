-- db/functions/18_presence_view.sql — what others see of a user's presence, in one definition

-- Presence as shown to others (GET /presence, a conversation's peer, presence frames):
-- * show_online_status = false: always offline, no last_seen;

-- * a live WebSocket lease on any server process: online (or the away/busy the user chose);

-- * otherwise a status set over HTTP counts for 60 s after it was last set (a heartbeat), then
--   offline -- so a user whose last socket closed, or whose process died, is offline within 60 s.
-- security_invoker: the caller's row-level security applies to both tables.
CREATE OR REPLACE VIEW vechat.presence_view WITH (security_invoker = true) AS
SELECT p.organisation_id,
       p.user_id,
       p.user_type,
       CASE
           WHEN NOT p.show_online_status THEN 'offline'
           WHEN EXISTS (SELECT 1 FROM public.vechat_presence_connections c
                        WHERE c.organisation_id = p.organisation_id AND c.user_type = p.user_type
                          AND c.user_id = p.user_id AND c.expires_at > now() AND c.sockets > 0)
               THEN CASE WHEN p.status IN ('away', 'busy') THEN p.status ELSE 'online' END
           WHEN p.status <> 'offline' AND p.updated_at > now() - interval '60 seconds' THEN p.status
           ELSE 'offline'
       END::varchar(20) AS status,
       CASE WHEN p.show_online_status THEN p.last_seen END AS last_seen
FROM public.vechat_presence p;
COMMENT ON VIEW vechat.presence_view IS
    'Presence as others see it: honours show_online_status, live WebSocket leases, and a 60 s lifetime for statuses set over HTTP. Users without a row are offline.';
