-- The roster entry an OIDC identity maps to (by email, case-insensitively), and whether it may act now.
SELECT s.id, s.role, s.region, s.partner_id,
       s.deactivated_at IS NULL AND p.deactivated_at IS NULL AS active
FROM staff s LEFT JOIN partners p ON p.id = s.partner_id
WHERE lower(s.email) = lower($1)
