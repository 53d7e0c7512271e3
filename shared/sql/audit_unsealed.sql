-- Rows not yet in the chain, oldest first, locked. jsonb's text form is canonical (PostgreSQL normalises
-- key order and spacing) and does not depend on the connection's type codecs.
SELECT id, at, actor_role, actor_id, partner_id, action, target_type, target_id, detail::text AS detail_text
FROM audit_log
WHERE seq IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE
