-- db/migrations/0003_send_path_indexes.up.sql — one index fewer to write per message sent

-- (organisation_id, sender_type, sender_id) is the leading part of the unique key
-- vechat_messages_organisation_id_sender_type_sender_id_client_id_key, which serves every lookup
-- by sender (the participant policies' sender branch, a sender's messages) as well. Each message
-- sent wrote both; now it writes the key alone (bench/http_api.py, docs/performance.md).
DROP INDEX public.vechat_messages_organisation_id_sender_type_sender_id_idx;
