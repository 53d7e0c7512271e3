-- The referral, locked for a change; row-level security decides whether the caller sees it at all.
-- FOR NO KEY UPDATE, the lock an UPDATE of its (non-key) columns takes anyway: it keeps two changes of
-- one referral apart as FOR UPDATE did, but not the foreign-key checks (KEY SHARE) of the rows other
-- services add about it meanwhile (notifications, deliveries, routing decisions, youth matches), which
-- FOR UPDATE made wait for the whole request. Routing locks referrals the same way (stop 22).
SELECT * FROM referrals WHERE id = $1 FOR NO KEY UPDATE
