-- The new referral's blind indexes, and the earlier referrals sharing a blocking token with it (run as
-- the system inside refnet_youth_candidates: the referrer cannot read other partners' tokens).
-- $1 the referral, $2 token kinds, $3 tokens (same order).
WITH ins AS (
    INSERT INTO youth_tokens (referral_id, kind, token)
    SELECT $1, k, t FROM unnest($2::text[], $3::bytea[]) AS u(k, t)
)
SELECT other, shared, shared_tri, their_tri FROM refnet_youth_candidates($1, $2, $3)
