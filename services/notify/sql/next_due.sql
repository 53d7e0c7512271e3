-- Seconds until the next delivery becomes claimable (negative: already due), or NULL when none waits.
SELECT extract(epoch FROM min(greatest(d.next_attempt_at, coalesce(e.throttled_until, d.next_attempt_at))) - now())::float8
FROM deliveries d
LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.state IN ('pending', 'failed')
