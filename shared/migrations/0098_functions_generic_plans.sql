-- 0096/0097 made the per-referral SECURITY DEFINER functions PL/pgSQL so their plans are kept for the
-- session, but PL/pgSQL still plans a query with parameters afresh on every call while the planner
-- judges a generic plan dearer than a custom one, and with array parameters (the youth's tokens) it
-- always does: refnet_youth_candidates planned its lookup on every referral, 0.3-0.5 ms of the
-- database per call for a 0.1 ms query. Their queries are index lookups whatever the values (the
-- youth lookup runs with enable_seqscan off), so the generic plan is the right one every time:
-- measured 0.47 -> 0.25 ms per call with candidates found (the same rows for 30 of 30 referrals),
-- 0.62 -> 0.12 ms without.
ALTER FUNCTION refnet_youth_candidates(uuid, text[], bytea[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION refnet_authenticate_api_key(bytea) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION refnet_has_webhook_subscriber(uuid, text) SET plan_cache_mode = force_generic_plan;
