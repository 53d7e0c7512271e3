-- Whether the referring partner may be told of this referral's status now, re-read from the database
-- (never taken from the event): the referral has not stopped and the youth's consent covers
-- share_status_with_referrer ($2) and is not withdrawn (migration 0035). NULL: no such referral.
SELECT r.status <> 'withdrawn' AND refnet_consent_covers(r.id, $2) FROM referrals r WHERE r.id = $1
