-- Row-level security for the notification tables (0004): partners reach only their own webhook
-- endpoints and deliveries; admins read (and replay); workers act as the system.

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'deliveries', 'delivery_attempts', 'delivery_counters',
                             'offer_reminders']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY system_all ON %I USING (refnet_role() = ''system'') WITH CHECK (refnet_role() = ''system'')', t);
    END LOOP;
END $$;

CREATE POLICY partner_own ON webhook_endpoints
    USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());
CREATE POLICY admin_read ON webhook_endpoints FOR SELECT USING (refnet_role() = 'admin');

CREATE POLICY partner_own ON deliveries
    USING (refnet_role() = 'partner' AND channel = 'webhook' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND channel = 'webhook' AND partner_id = refnet_partner());
CREATE POLICY admin_all ON deliveries USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');

CREATE POLICY admin_read ON delivery_attempts FOR SELECT USING (refnet_role() = 'admin');
CREATE POLICY admin_read ON delivery_counters FOR SELECT USING (refnet_role() = 'admin');
