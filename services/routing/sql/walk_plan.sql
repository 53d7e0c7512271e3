-- The candidate walk's planner settings, for its transaction only (they ride on BEGIN): a generic
-- plan that walks the indexes in order, never a scan and sort of a region's case managers.
SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off
