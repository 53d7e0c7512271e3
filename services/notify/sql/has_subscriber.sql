-- Whether the partner has an active endpoint subscribed to the event type: one autocommit statement
-- (migration 0010), not a transaction.
SELECT refnet_has_webhook_subscriber($1, $2)
