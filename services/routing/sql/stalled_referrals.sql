-- Referrals still unrouted $1 seconds after intake: their event was lost somewhere.
SELECT id FROM referrals
WHERE status = 'received' AND received_at < now() - make_interval(secs => $1)
ORDER BY received_at
LIMIT $2
