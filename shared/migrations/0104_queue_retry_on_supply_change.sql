-- The queue drain (routing's periodic duty) retried every waiting referral that found no eligible case
-- manager on every tick (up to 500 every 5 s, each a full routing), although a referral tried against
-- the same case managers finds nobody again: at 400 referrals/s in the benchmark that was 7-10% of
-- routing's CPU and grew with the queue. Now a failed retry remembers what it was tried against, and
-- the drain skips it until something it depends on may have changed:
--   * a case manager in its region whose eligibility inputs changed (a place freed, capacity, status,
--     regions, needs, languages, specialisms) in a transaction the try could not see: every such
--     change stamps the row with its transaction id (case_managers.supply_xid), and the try keeps the
--     snapshot it read with; "not visible in that snapshot" is exact under concurrency, where comparing
--     times or ids would miss a change that committed after the try began reading but started before;
--   * the referral row itself (any update changes its xmin: requeued, edited, returned to the queue);
--   * the routing rules (policy version).
ALTER TABLE case_managers ADD COLUMN supply_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE FUNCTION refnet_stamp_supply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.supply_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

-- Only what eligibility reads (walk.sql's hard filters): a place taken (active_count up) cannot make
-- anyone eligible, and is what nearly every update is, so it does not even call the function.
CREATE TRIGGER case_managers_supply BEFORE UPDATE ON case_managers FOR EACH ROW
WHEN (NEW.active_count < OLD.active_count OR NEW.capacity <> OLD.capacity OR NEW.status <> OLD.status
      OR NEW.regions <> OLD.regions OR NEW.needs <> OLD.needs OR NEW.languages <> OLD.languages
      OR NEW.specialisms <> OLD.specialisms)
EXECUTE FUNCTION refnet_stamp_supply();

-- One row per queued referral the drain tried without result (no personal data: ids, a snapshot).
CREATE TABLE queue_tries (
    referral_id    uuid PRIMARY KEY REFERENCES referrals (id),
    referral_xmin  xid NOT NULL,
    tried_snapshot pg_snapshot NOT NULL,
    policy_version text NOT NULL,
    tried_at       timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE queue_tries ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_tries FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON queue_tries
    USING ((SELECT refnet_role()) = 'system') WITH CHECK ((SELECT refnet_role()) = 'system');
