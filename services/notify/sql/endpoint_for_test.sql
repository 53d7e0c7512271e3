-- The endpoint a webhook.test was asked for, as the database knows it (never the event's word).
SELECT partner_id, state FROM webhook_endpoints WHERE id = $1
