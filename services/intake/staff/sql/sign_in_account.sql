-- The account signing in (by email, case-insensitively): whether it may act now (not deactivated, nor
-- its partner), whether its password is a one-time one, and its token version.
SELECT s.id, s.role, s.region, s.partner_id, s.password_hash, s.password_change_required, s.token_version,
       s.deactivated_at IS NULL AND p.deactivated_at IS NULL AS active
FROM staff s LEFT JOIN partners p ON p.id = s.partner_id
WHERE lower(s.email) = lower($1)
