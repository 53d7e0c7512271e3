SELECT id FROM webhook_endpoints WHERE partner_id = $1 AND state = 'active' AND $2 = ANY (events)
