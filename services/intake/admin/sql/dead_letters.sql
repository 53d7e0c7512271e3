-- Bus messages the consumers gave up on, newest first, of one consumer ($1) or all, before id $2.
SELECT id, consumer, subject, event_id, stream_seq, delivery_count, reason, error_class, error_message,
       payload, first_failed_at, last_failed_at
FROM dead_letters
WHERE ($1::text IS NULL OR consumer = $1) AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
