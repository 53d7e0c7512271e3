-- A service delivered to the youth (coded; no free text).
INSERT INTO interventions (id, referral_id, type, delivered_on, provider_partner_id, duration, recorded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *
