-- Deactivate ($2 false: every token and session of the person stops at once) or reactivate ($2 true: they
-- sign in again; tokens from before the deactivation stay dead). Returns the row when it changed.
UPDATE staff
SET deactivated_at = CASE WHEN $2 THEN NULL ELSE now() END,
    token_version = token_version + CASE WHEN $2 THEN 0 ELSE 1 END
WHERE id = $1 AND (deactivated_at IS NULL) <> $2
RETURNING id, role
