-- One measure observed at a follow-up.
INSERT INTO outcomes (id, referral_id, point, measure, value, observed_on, source, recorded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
