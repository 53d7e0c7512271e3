-- Intake stores a group commit's referrals with one statement per caller (issue 19); their blind
-- indexes and youth matching now follow suit: one call for a caller's referrals in a batch instead of
-- one per referral (a lone referral is a batch of one). Replaces refnet_youth_candidates (0096, 0098).
--
-- rids: the referrals, in the order they are matched; idx: for each token, the 1-based place in rids of
-- its referral; kinds/tokens as before. Each referral is matched exactly as if it had been stored alone
-- after the ones before it: its candidates are stored referrals (any partner's; found by a blocking
-- token) and the referrals before it in rids (their tokens come in with the call: the statement that
-- inserts them cannot see its own rows), never itself or the ones after it. Same authorisation as
-- before: a referral that is not the caller's partner's gets no candidates.
CREATE FUNCTION refnet_youth_candidates_many(rids uuid[], idx integer[], kinds text[], tokens bytea[])
RETURNS TABLE (i integer, other uuid, shared text[], shared_tri integer, their_tri integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
-- Both lookups are by an indexed column for a handful of values (0096), and the generic plan is the
-- right one whatever the values (0098).
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH g AS MATERIALIZED (
        -- A scalar subquery, not EXISTS: a semi-join's generic plan read all the partner's referrals
        -- (referrals_partner_updated) instead of looking up a few by key.
        SELECT q.rid, q.n::integer AS n
        FROM unnest(rids) WITH ORDINALITY AS q(rid, n)
        WHERE (SELECT r.partner_id FROM referrals r WHERE r.id = q.rid) = refnet_partner()
    ), given AS MATERIALIZED (
        -- As the token rows are stored (a referral's list as given), for the candidates within the call.
        SELECT u.n, u.k, u.t FROM unnest(idx, kinds, tokens) AS u(n, k, t)
    ), mine AS MATERIALIZED (
        SELECT DISTINCT u.n, u.k, u.t FROM given u
    ), blocked AS (
        SELECT g.n, c.referral_id AS other, false AS in_call
        FROM g CROSS JOIN LATERAL (
            SELECT DISTINCT y.referral_id FROM youth_tokens y JOIN mine m ON m.t = y.token AND m.k = y.kind
            WHERE m.n = g.n AND m.k IN ('exact', 'dob', 'phone') AND y.kind IN ('exact', 'dob', 'phone')
              AND y.referral_id <> ALL (rids)
            LIMIT 500
        ) c
        UNION ALL
        SELECT DISTINCT a.n, rids[b.n], true
        FROM mine a JOIN mine b ON b.k = a.k AND b.t = a.t AND b.n < a.n
        -- Both ends authorised: an earlier referral of the call counts only if it is the caller's too.
        WHERE a.k IN ('exact', 'dob', 'phone') AND a.n IN (SELECT g.n FROM g) AND b.n IN (SELECT g.n FROM g)
    ), theirs AS (
        SELECT b.n, b.other, y.kind AS k, y.token AS t
        FROM blocked b JOIN youth_tokens y ON y.referral_id = b.other
        WHERE NOT b.in_call
        UNION ALL
        SELECT b.n, b.other, o.k, o.t
        FROM blocked b JOIN given o ON o.n = array_position(rids, b.other)
        WHERE b.in_call
    )
    SELECT x.n, x.other,
           coalesce(array_agg(DISTINCT x.k) FILTER (WHERE x.k <> 'first_tri' AND m.t IS NOT NULL), '{}'),
           (count(*) FILTER (WHERE x.k = 'first_tri' AND m.t IS NOT NULL))::integer,
           (count(*) FILTER (WHERE x.k = 'first_tri'))::integer
    FROM theirs x
    LEFT JOIN mine m ON m.n = x.n AND m.k = x.k AND m.t = x.t
    GROUP BY x.n, x.other;
END
$$;

DROP FUNCTION refnet_youth_candidates(uuid, text[], bytea[]);

-- Only the blocking kinds (exact, dob, phone) are ever looked up by token; a referral's other eight or
-- so tokens (first, last and the first name's trigrams) are read by referral id. Indexing those by
-- token cost most of the insert under load: the trigrams of common names are long runs of one key, so
-- concurrent referrals inserted into the same leaf pages (page locks, splits, deduplication passes):
-- 4.2 ms per batch statement of ~7 referrals at 500/s against 0.8 ms uncontended. The lookup above
-- names the kinds on youth_tokens itself so the planner can prove the partial index applies.
CREATE INDEX youth_tokens_blocking ON youth_tokens (token) WHERE kind IN ('exact', 'dob', 'phone');
DROP INDEX youth_tokens_token;

REVOKE ALL ON FUNCTION refnet_youth_candidates_many(uuid[], integer[], text[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_youth_candidates_many(uuid[], integer[], text[], bytea[]) TO refnet_app;
