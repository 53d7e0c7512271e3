-- Of the partners in $1, those with an active endpoint subscribed to either event type ($2, $3): one
-- autocommit statement (migration 0010), not a transaction, for every status change notify has in hand
-- at that moment (subscribers.py), instead of one round trip per event.
SELECT p FROM unnest($1::uuid[]) AS p
WHERE refnet_has_webhook_subscriber(p, $2) OR refnet_has_webhook_subscriber(p, $3)
