-- Found by profiling the pipeline at 400 referrals/s (pg_stat_statements, track = all; docs/performance.md):
-- refnet_youth_candidates took half of PostgreSQL's statement time per referral. A LANGUAGE sql function
-- that cannot be inlined (SECURITY DEFINER, SET clauses) is planned again on every call; PL/pgSQL keeps
-- the plan of its query for the session. The query also joined the candidates' tokens to the new
-- referral's with a subquery per token row; it now does it with one join (mine has one row per
-- (kind, token): a referral's tokens are distinct within a kind, DISTINCT makes sure). Same signature,
-- same rows, same authorisation: $1 must be a referral of the caller's partner, else nothing.
-- The table grows from nothing with every referral, and a plan made while it was small (or on statistics
-- of that time) read it whole on every call: 1,413 sequential scans of youth_tokens, 38M rows, in 10 s
-- at 400/s (pg_stat_user_tables). Both of its lookups are by an indexed column (token, referral_id) for
-- a handful of values, so a sequential scan is never the right plan here: enable_seqscan = off.
CREATE OR REPLACE FUNCTION refnet_youth_candidates(rid uuid, kinds text[], tokens bytea[])
RETURNS TABLE (other uuid, shared text[], shared_tri integer, their_tri integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
SET enable_seqscan = off
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.partner_id = refnet_partner()) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH mine AS MATERIALIZED (
        SELECT DISTINCT u.k, u.t FROM unnest(kinds, tokens) AS u(k, t)
    ), blocked AS (
        SELECT DISTINCT y.referral_id FROM youth_tokens y JOIN mine m ON m.t = y.token AND m.k = y.kind
        WHERE m.k IN ('exact', 'dob', 'phone') AND y.referral_id <> rid
        LIMIT 500
    )
    SELECT b.referral_id,
           coalesce(array_agg(DISTINCT y.kind) FILTER (WHERE y.kind <> 'first_tri' AND m.t IS NOT NULL), '{}'),
           (count(*) FILTER (WHERE y.kind = 'first_tri' AND m.t IS NOT NULL))::int,
           (count(*) FILTER (WHERE y.kind = 'first_tri'))::int
    FROM blocked b
    JOIN youth_tokens y ON y.referral_id = b.referral_id
    LEFT JOIN mine m ON m.k = y.kind AND m.t = y.token
    GROUP BY b.referral_id;
END
$$;

-- Each referral writes about eleven tokens, and each row's foreign-key check on referrals cost more than
-- its row-level security check (0.42 ms for eleven rows with it, 0.26 without, on this machine). The
-- check says nothing the insert policy does not: a partner or the intake desk may insert tokens only for
-- an existing referral of its own (referrer_insert, 0040), the system writes none, and referrals are
-- never deleted (shredding keeps the row; refnet_forget_youth deletes the tokens).
ALTER TABLE youth_tokens DROP CONSTRAINT youth_tokens_referral_id_fkey;
