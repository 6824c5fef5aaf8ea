-- db/functions/15_vechat_user_settings.sql — settings copied where others may read them

-- Others must know whether to show this user as online and whether to show when they read a
-- message, but may not read the settings row: both flags are copied to the user's presence row,
-- in the user's own transaction.
CREATE OR REPLACE FUNCTION vechat.user_settings_after_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.show_online_status IS NOT DISTINCT FROM OLD.show_online_status
       AND NEW.show_read_receipts IS NOT DISTINCT FROM OLD.show_read_receipts THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.vechat_presence AS p
        (organisation_id, user_id, user_type, show_online_status, show_read_receipts)
    VALUES (NEW.organisation_id, NEW.user_id, NEW.user_type, NEW.show_online_status, NEW.show_read_receipts)
    ON CONFLICT (organisation_id, user_type, user_id)
    DO UPDATE SET show_online_status = EXCLUDED.show_online_status,
                  show_read_receipts = EXCLUDED.show_read_receipts;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER vechat_user_settings_after_write
    AFTER INSERT OR UPDATE ON public.vechat_user_settings
    FOR EACH ROW EXECUTE FUNCTION vechat.user_settings_after_write();

CREATE OR REPLACE FUNCTION vechat.user_settings_before_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER vechat_user_settings_before_update
    BEFORE UPDATE ON public.vechat_user_settings
    FOR EACH ROW EXECUTE FUNCTION vechat.user_settings_before_update();
