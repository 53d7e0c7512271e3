-- One dead letter.
SELECT id, consumer, subject, event_id, stream_seq, delivery_count, reason, error_class, error_message,
       payload, first_failed_at, last_failed_at
FROM dead_letters
WHERE id = $1
