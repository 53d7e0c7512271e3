-- The roster entry an OIDC identity maps to (by email, case-insensitively).
SELECT id, role, region FROM staff WHERE lower(email) = lower($1)
