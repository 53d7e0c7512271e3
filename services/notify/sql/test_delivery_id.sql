SELECT id FROM deliveries WHERE event_id = $1 AND recipient_id = $2 AND channel = 'webhook'
