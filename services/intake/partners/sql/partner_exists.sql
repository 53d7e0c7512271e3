-- Whether the partner exists.
SELECT 1 FROM partners WHERE id = $1
