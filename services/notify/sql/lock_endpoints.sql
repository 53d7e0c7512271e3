-- Lock the endpoints a batch of webhook attempts will update, in id order, before any delivery row.
-- Whoever else writes both (DELETE /v1/webhooks/{id}, disabling an endpoint) locks the endpoint and
-- then its deliveries; recording in the other order could deadlock with them.
SELECT id FROM webhook_endpoints WHERE id = any($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
