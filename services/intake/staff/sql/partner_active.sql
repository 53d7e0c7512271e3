-- Whether a partner exists and is active (NULL: no such partner).
SELECT deactivated_at IS NULL FROM partners WHERE id = $1
