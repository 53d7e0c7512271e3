-- Whether the partner has an active endpoint subscribed to either event type: one autocommit
-- statement (migration 0010), not a transaction, and one round trip for both types.
SELECT refnet_has_webhook_subscriber($1, $2) OR refnet_has_webhook_subscriber($1, $3)
