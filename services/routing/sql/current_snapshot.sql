-- The snapshot a queue retry reads with (taken before it reads anything), for queue_tried.sql.
SELECT pg_current_snapshot()::text
