-- Found by `python -m bench.explain` (docs/performance.md, "Hot statements at 1M referrals"): notify's
-- region_supervisors.sql (every unroutable referral) read the whole staff table, case managers and
-- partner users included, to find a region's few supervisors. Partial: only active supervisors. Not
-- CONCURRENTLY: staff is small, and a concurrent build waits on a second migrator's open transaction.
CREATE INDEX staff_supervisors ON staff (region) WHERE role = 'supervisor' AND deactivated_at IS NULL;
