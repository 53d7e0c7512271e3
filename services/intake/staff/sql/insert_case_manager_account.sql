-- The staff account of a new case manager; its region is the home region supervisors' visibility keys on.
INSERT INTO staff (id, email, display_name, role, region, password_hash)
VALUES ($1, $2, $3, 'case_manager', $4, $5)
