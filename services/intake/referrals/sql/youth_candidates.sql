-- The blind indexes of a caller's new referrals, one row each, and for each the earlier referrals sharing
-- a blocking token with it (run as the system inside refnet_youth_candidates_many: the referrer cannot
-- read other partners' tokens). $1 the referrals in order; $2-$6 their dob, exact, phone, first and last
-- tokens (same order, NULL for none); the first name's trigrams flattened: $8 each trigram, $7 the
-- 1-based place in $1 of its referral.
WITH tris AS (
    SELECT t.n, array_agg(t.tri) AS first_tri FROM unnest($7::int[], $8::bytea[]) AS t(n, tri) GROUP BY t.n
), ins AS (
    INSERT INTO youth_blind (referral_id, dob, exact, phone, first, last, first_tri)
    SELECT q.rid, q.dob, q.exact, q.phone, q.first, q.last, coalesce(t.first_tri, '{}')
    FROM unnest($1::uuid[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[])
         WITH ORDINALITY AS q(rid, dob, exact, phone, first, last, n)
    LEFT JOIN tris t ON t.n = q.n
)
SELECT i, other, shared, shared_tri, their_tri
FROM refnet_youth_candidates_many($1::uuid[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[],
                                  $7::int[], $8::bytea[])
