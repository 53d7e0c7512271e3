-- A new endpoint with its sealed signing secret.
INSERT INTO webhook_endpoints (id, partner_id, url, events, secret_sealed)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, state, created_at
