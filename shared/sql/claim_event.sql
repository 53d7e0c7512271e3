-- The consumer's processed record for an event, in the transaction of its effect: no row back means an
-- earlier delivery already committed that effect.
INSERT INTO processed_messages (consumer, event_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING
RETURNING 1
