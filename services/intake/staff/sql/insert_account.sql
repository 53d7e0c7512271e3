-- A new account of any role, with a one-time password (changed at first sign-in).
INSERT INTO staff (id, email, display_name, role, region, partner_id, password_hash, password_change_required)
VALUES ($1, $2, $3, $4, $5, $6, $7, true)
