-- The chain head, with its content (the first keyed sealing checks whether an unkeyed chain precedes it).
SELECT id, at, actor_role, actor_id, partner_id, action, target_type, target_id, detail::text AS detail_text,
       seq, prev_hash, hash
FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1
