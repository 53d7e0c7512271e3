-- The outbox NOTIFY names its writer (application_name). The services' relays are woken in-process
-- after their own commits, so they ignore NOTIFYs from other service processes (whose relays publish
-- those rows) and wake only for rows written elsewhere: the CLI, an operator, a migration.
CREATE OR REPLACE FUNCTION refnet_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refnet_outbox', coalesce(current_setting('application_name', true), ''));
    RETURN NULL;
END $$;
