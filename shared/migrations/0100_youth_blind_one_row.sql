-- A referral's blind indexes (0040) as one row instead of one row per token (issue 19). A referral had
-- about eleven rows in youth_tokens (dob, exact, phone, first, last and the first name's trigrams), each
-- with its entry in youth_tokens_referral, its row-level security check and its WAL record: 25 WAL
-- records and ~100 µs of the youth statement per referral, serially, the largest part of a referral's
-- rows after its protocol steps. Each kind is one value per referral except the trigrams (a set), so a
-- row holds them all: one heap row, its key and one entry per blocking kind present. Matching also gets
-- simpler: a candidate found by a blocking token is the row itself, no second lookup of its tokens.
--
-- Kinds are columns now, not a column's values; a token equal across kinds cannot happen (each kind is
-- its own HMAC domain, referrals.matching._mac). Nothing else changes: who may write (the referrer, for
-- its own referral), who may read (the system only), and shredding deletes the row.
CREATE TABLE youth_blind (
    referral_id uuid PRIMARY KEY,
    dob         bytea NOT NULL,
    exact       bytea,
    phone       bytea,
    first       bytea,
    last        bytea,
    first_tri   bytea[] NOT NULL DEFAULT '{}'
);
-- Only the blocking kinds are looked up by value; partial, as a referral often has no phone.
CREATE INDEX youth_blind_dob ON youth_blind (dob);
CREATE INDEX youth_blind_exact ON youth_blind (exact) WHERE exact IS NOT NULL;
CREATE INDEX youth_blind_phone ON youth_blind (phone) WHERE phone IS NOT NULL;

-- Every stored token comes along: a referral's kinds are one token each (first_tri: distinct trigrams).
INSERT INTO youth_blind (referral_id, dob, exact, phone, first, last, first_tri)
SELECT referral_id,
       (array_agg(token) FILTER (WHERE kind = 'dob'))[1],
       (array_agg(token) FILTER (WHERE kind = 'exact'))[1],
       (array_agg(token) FILTER (WHERE kind = 'phone'))[1],
       (array_agg(token) FILTER (WHERE kind = 'first'))[1],
       (array_agg(token) FILTER (WHERE kind = 'last'))[1],
       coalesce(array_agg(DISTINCT token) FILTER (WHERE kind = 'first_tri'), '{}')
FROM youth_tokens
GROUP BY referral_id
HAVING count(*) FILTER (WHERE kind = 'dob') > 0;

ALTER TABLE youth_blind ENABLE ROW LEVEL SECURITY;
ALTER TABLE youth_blind FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON youth_blind
    USING ((SELECT refnet_role()) = 'system') WITH CHECK ((SELECT refnet_role()) = 'system');
-- Nobody but the system reads the blind indexes; the referrer writes its own referral's at intake.
CREATE POLICY referrer_insert ON youth_blind FOR INSERT
    WITH CHECK ((SELECT refnet_role()) IN ('partner', 'intake_staff')
                AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = referral_id AND r.partner_id = (SELECT refnet_partner())));

-- As 0099, on the rows: rids the referrals in the order they are matched, their tokens by kind in the
-- same order (NULL: none of that kind), and the trigrams flattened (tri_idx: the 1-based place in rids
-- of each trigram's referral). Each referral is matched exactly as if it had been stored alone after the
-- ones before it: its candidates are stored referrals (any partner's) sharing a blocking token and the
-- call's referrals before it (their tokens come with the call: the statement that inserts them cannot
-- see its own rows), never itself or the ones after it; a referral that is not the caller's partner's
-- gets none, and an earlier referral of the call counts only if it is the caller's too.
CREATE FUNCTION refnet_youth_candidates_many(rids uuid[], dob bytea[], exact bytea[], phone bytea[],
                                             first bytea[], last bytea[], tri_idx integer[], tri bytea[])
RETURNS TABLE (i integer, other uuid, shared text[], shared_tri integer, their_tri integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
-- Lookups by key or by an indexed token for a handful of values (0096); the generic plan is the right
-- one whatever the values (0098).
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH tris AS MATERIALIZED (
        SELECT t.n, array_agg(t.tri) AS first_tri FROM unnest(tri_idx, tri) AS t(n, tri) GROUP BY t.n
    ), given AS MATERIALIZED (
        -- A scalar subquery, not EXISTS: a semi-join's generic plan read all the partner's referrals
        -- (0099).
        SELECT q.n::integer AS n, q.rid, q.dob, q.exact, q.phone, q.first, q.last,
               coalesce(t.first_tri, '{}') AS first_tri
        FROM unnest(rids, dob, exact, phone, first, last) WITH ORDINALITY AS q(rid, dob, exact, phone, first, last, n)
        LEFT JOIN tris t ON t.n = q.n
        WHERE (SELECT r.partner_id FROM referrals r WHERE r.id = q.rid) = refnet_partner()
    ), pairs AS (
        SELECT g.n, y.referral_id AS other, g.dob, g.exact, g.phone, g.first, g.last, g.first_tri,
               y.dob AS o_dob, y.exact AS o_exact, y.phone AS o_phone, y.first AS o_first, y.last AS o_last,
               y.first_tri AS o_tri
        FROM given g CROSS JOIN LATERAL (
            SELECT * FROM youth_blind y
            WHERE (y.dob = g.dob OR y.exact = g.exact OR y.phone = g.phone) AND y.referral_id <> ALL (rids)
            LIMIT 500
        ) y
        UNION ALL
        -- Both ends authorised: given holds only the caller's referrals.
        SELECT a.n, b.rid, a.dob, a.exact, a.phone, a.first, a.last, a.first_tri,
               b.dob, b.exact, b.phone, b.first, b.last, b.first_tri
        FROM given a JOIN given b ON b.n < a.n AND (b.dob = a.dob OR b.exact = a.exact OR b.phone = a.phone)
    )
    SELECT p.n, p.other,
           array_remove(ARRAY[CASE WHEN p.dob = p.o_dob THEN 'dob' END,
                              CASE WHEN p.exact = p.o_exact THEN 'exact' END,
                              CASE WHEN p.first = p.o_first THEN 'first' END,
                              CASE WHEN p.last = p.o_last THEN 'last' END,
                              CASE WHEN p.phone = p.o_phone THEN 'phone' END], NULL),
           (SELECT count(*) FROM unnest(p.o_tri) AS x(t) WHERE x.t = ANY (p.first_tri))::integer,
           cardinality(p.o_tri)
    FROM pairs p;
END
$$;

DROP FUNCTION refnet_youth_candidates_many(uuid[], integer[], text[], bytea[]);

-- Shredding forgets the youth (0040): the blind indexes and the matches of a referral whose PII is gone.
CREATE OR REPLACE FUNCTION refnet_forget_youth(rid uuid) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    DELETE FROM youth_blind WHERE referral_id = rid
      AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.pii_shredded_at IS NOT NULL);
    DELETE FROM youth_matches WHERE (referral_id = rid OR other_referral_id = rid)
      AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.pii_shredded_at IS NOT NULL);
$$;

DROP TABLE youth_tokens;

REVOKE ALL ON FUNCTION refnet_youth_candidates_many(uuid[], bytea[], bytea[], bytea[], bytea[], bytea[], integer[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_youth_candidates_many(uuid[], bytea[], bytea[], bytea[], bytea[], bytea[], integer[], bytea[]) TO refnet_app;
