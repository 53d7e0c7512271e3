-- The blind indexes of a caller's new referrals, and for each the earlier referrals sharing a blocking
-- token with it (run as the system inside refnet_youth_candidates_many: the referrer cannot read other
-- partners' tokens). $1 the referrals in order, $2 each token's 1-based place of its referral in $1,
-- $3 token kinds, $4 tokens (same order).
WITH ins AS (
    INSERT INTO youth_tokens (referral_id, kind, token)
    SELECT ($1::uuid[])[u.n], u.k, u.t FROM unnest($2::int[], $3::text[], $4::bytea[]) AS u(n, k, t)
)
SELECT i, other, shared, shared_tri, their_tri FROM refnet_youth_candidates_many($1::uuid[], $2::int[], $3::text[], $4::bytea[])
