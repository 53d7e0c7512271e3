-- The supervisor queue: unroutable referrals, most urgent first, then longest waiting (since received).
-- $1 region (null: all the caller may see), $2 reason (null: any), $3 limit, $4 also those without a
-- region (out of area) when a region is given.
SELECT r.id, r.region, r.needs, r.language, r.urgency, r.age_years, r.unroutable_reason, r.received_at,
       r.queued_at,
       (SELECT count(*) FROM assignments a
        WHERE a.referral_id = r.id AND a.state IN ('declined', 'expired')) AS failed_offers
FROM referrals r
WHERE r.status = 'unroutable'
  AND ($1::text IS NULL OR r.region = $1 OR ($4::boolean AND r.region IS NULL))
  AND ($2::text IS NULL OR r.unroutable_reason = $2)
ORDER BY (r.urgency = 'urgent') DESC, r.received_at, r.id
LIMIT $3
