-- Partners with the number of their keys that work now, and whether the partner itself is active.
SELECT p.id, p.name, p.kind, p.deactivated_at IS NULL AS partner_active,
       count(k.id) FILTER (WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active
FROM partners p LEFT JOIN api_keys k ON k.partner_id = p.id
GROUP BY p.id
ORDER BY p.name
