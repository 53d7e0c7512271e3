-- One audit row in the audited transaction; the detail arrives as JSON text (any connection may audit,
-- whatever its type codecs).
INSERT INTO audit_log (actor_role, actor_id, partner_id, action, target_type, target_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
