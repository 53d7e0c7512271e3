-- Referral status transitions recorded once per statement instead of once per row (issue 19). Routing
-- changes the status of a whole batch of referrals in one UPDATE; the row trigger of 0005 ran a PL/pgSQL
-- call, a lookup of the allowed transitions and a one-row INSERT for each of them (37 µs per referral
-- at 500/s, pg_stat_statements with track = all). A statement trigger sees the statement's rows as
-- transition tables and does the same with one check and one INSERT for all of them.
--
-- Same rules, same rows: an illegal transition still fails the statement (check_violation, naming one
-- offending referral); each change of status writes one referral_transitions row with the same actor,
-- role and reason as before (the reason setting is read when the statement ends, still inside it).
-- A trigger with transition tables cannot name columns (UPDATE OF status), so it runs after every UPDATE
-- of referrals and keeps the rows whose status changed.
CREATE FUNCTION refnet_referral_transitions() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    bad record;
BEGIN
    SELECT o.id, o.status AS from_status, n.status AS to_status INTO bad
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status
      AND NOT EXISTS (SELECT 1 FROM referral_status_transitions t
                      WHERE t.from_status = o.status AND t.to_status = n.status)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'illegal referral status transition % -> % (referral %)', bad.from_status, bad.to_status, bad.id
            USING ERRCODE = 'check_violation', HINT = 'see shared/lifecycle.py TRANSITIONS';
    END IF;
    INSERT INTO referral_transitions (referral_id, from_status, to_status, actor_role, actor_id, reason)
    SELECT n.id, o.status, n.status, refnet_role(), coalesce(current_setting('app.actor_id', true), ''),
           CASE n.status
               WHEN 'unroutable' THEN n.unroutable_reason
               WHEN 'closed' THEN n.close_reason
               ELSE nullif(current_setting('app.transition_reason', true), '')
           END
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE o.status IS DISTINCT FROM n.status
    ORDER BY n.id;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION refnet_referral_transitions() FROM PUBLIC;

DROP TRIGGER referrals_transition ON referrals;
DROP FUNCTION refnet_referral_transition();
CREATE TRIGGER referrals_transitions AFTER UPDATE ON referrals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION refnet_referral_transitions();
