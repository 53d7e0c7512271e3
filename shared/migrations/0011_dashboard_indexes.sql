-- Indexes for the dashboards, found by `python -m bench.dashboard` (bench/README.md has the numbers).
-- Without them these statements read the whole table, so their cost grew with the history kept.

-- GET /v1/referrals for admins and supervisors: newest first (visible_referrals.sql orders by
-- received_at DESC, id DESC and stops after a page; a backward scan gives that order). Partners have
-- referrals_partner_received. Also the dashboard's receipt windows (last 24 hours, 30 days).
CREATE INDEX referrals_received ON referrals (received_at, id);

-- The dashboard's hourly "assigned" series and time to acceptance read the offers of the last 24 hours
-- or 30 days.
CREATE INDEX assignments_offered ON assignments (offered_at);

-- The dashboard's hourly "unroutable" series. Partial: routing's usual decision, an offer, never
-- touches it.
CREATE INDEX routing_decisions_not_assigned ON routing_decisions (decided_at) WHERE outcome <> 'assigned';
