-- The state of one of the partner's endpoints (nothing: not theirs, or deleted).
SELECT state FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'
