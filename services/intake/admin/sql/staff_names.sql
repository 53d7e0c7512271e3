-- Staff display names (row-level security shows a supervisor their region's staff only).
SELECT id, display_name FROM staff WHERE id = ANY ($1::uuid[])
