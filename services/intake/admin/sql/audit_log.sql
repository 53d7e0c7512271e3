-- Audit log entries, newest first, of one action ($2) or all (ids and codes, no PII).
SELECT seq, id, at, actor_role, actor_id, action, target_type, target_id, detail
FROM audit_log
WHERE ($2::text IS NULL OR action = $2)
ORDER BY id DESC
LIMIT $1
