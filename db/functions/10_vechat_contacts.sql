-- db/functions/10_vechat_contacts.sql — who may change which contact column

-- A user may keep their own name, e-mail and avatar up to date, but what decides who may talk to
-- whom (role, assigned personnel, active) changes only through an admin (the ERP's directory sync).
CREATE OR REPLACE FUNCTION vechat.contacts_before_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND vechat.current_user_id() IS NOT NULL
       AND vechat.current_role_name() IS DISTINCT FROM 'admin'
       AND (NEW.role IS DISTINCT FROM OLD.role
            OR NEW.assigned_personnel IS DISTINCT FROM OLD.assigned_personnel
            OR NEW.active IS DISTINCT FROM OLD.active) THEN
        RAISE EXCEPTION 'only an admin changes role, assigned personnel or active'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.search_text := pg_catalog.lower(vechat.unaccent(
        pg_catalog.concat_ws(' ', NEW.display_name, NEW.email)));
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER vechat_contacts_before_write
    BEFORE INSERT OR UPDATE ON public.vechat_contacts
    FOR EACH ROW EXECUTE FUNCTION vechat.contacts_before_write();
