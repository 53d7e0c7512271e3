-- Row-level security: read the caller's identity once per query, not once per row.
--
-- The policies call refnet_role(), refnet_partner(), refnet_actor(), refnet_region() and
-- refnet_break_glass(). PostgreSQL inlines these STABLE SQL functions into current_setting(...) and
-- evaluates that for every row each OR-ed policy looks at: a full count of 1M referrals spent most of
-- its time there (bench.dashboard: the metrics totals scan, ~0.75 µs a row). Wrapped as a scalar
-- sub-select, each becomes an InitPlan computed once per statement. Same values, same meaning:
-- the settings cannot change while a statement runs.
--
-- Rewritten from the catalog, so every policy defined so far gets it, whichever migration made it.
-- Functions that take a row value (refnet_cm_has_referral(id), refnet_referral_region(...)) stay
-- per row: their answer depends on the row.
DO $$
DECLARE
    p record;
    fn text;
    new_qual text;
    new_check text;
    stmt text;
BEGIN
    FOR p IN
        SELECT schemaname, tablename, policyname, qual, with_check
        FROM pg_policies
        WHERE schemaname = 'public'
        ORDER BY tablename, policyname
    LOOP
        new_qual := p.qual;
        new_check := p.with_check;
        FOREACH fn IN ARRAY ARRAY['refnet_role', 'refnet_actor', 'refnet_partner', 'refnet_region',
                                  'refnet_break_glass']
        LOOP
            new_qual := replace(new_qual, fn || '()', '(SELECT ' || fn || '())');
            new_check := replace(new_check, fn || '()', '(SELECT ' || fn || '())');
        END LOOP;
        IF new_qual IS DISTINCT FROM p.qual OR new_check IS DISTINCT FROM p.with_check THEN
            stmt := format('ALTER POLICY %I ON %I.%I', p.policyname, p.schemaname, p.tablename);
            IF new_qual IS NOT NULL THEN
                stmt := stmt || format(' USING (%s)', new_qual);
            END IF;
            IF new_check IS NOT NULL THEN
                stmt := stmt || format(' WITH CHECK (%s)', new_check);
            END IF;
            EXECUTE stmt;
        END IF;
    END LOOP;
END
$$;
