INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)
