-- How many endpoints the partner has (deleted ones do not count).
SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1 AND state <> 'deleted'
