-- A new partner organisation (names are unique: NULL when the name is taken).
INSERT INTO partners (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id
