-- The candidate walk's planner settings, for its transaction only (they ride on BEGIN): a generic
-- plan that walks the indexes in order, never a scan and sort of a region's case managers. One
-- statement (set_config(..., true) is SET LOCAL), not four: it runs once per routing transaction.
SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)
