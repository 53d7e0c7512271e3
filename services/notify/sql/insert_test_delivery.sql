-- A partner's webhook.test delivery ($3 kind) under the id intake chose (and already showed to the
-- partner). A second insert of the same event, or an id already taken, does nothing: no row comes back.
INSERT INTO deliveries (id, event_id, kind, channel, recipient_id, endpoint_id, partner_id, payload)
VALUES ($1, $2, $3, 'webhook', $4, $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING id
