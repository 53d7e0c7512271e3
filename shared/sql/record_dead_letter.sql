-- A message a consumer gave up on. The same message again (its term was lost): the latest failure wins.
-- Every column is replaced so a stream that was recreated (sequences start over) cannot mix two messages.
INSERT INTO dead_letters (consumer, subject, event_id, stream_seq, delivery_count, reason, error_class,
                          error_message, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (consumer, stream_seq) DO UPDATE SET subject = excluded.subject, event_id = excluded.event_id,
    payload = excluded.payload, delivery_count = excluded.delivery_count, reason = excluded.reason,
    error_class = excluded.error_class, error_message = excluded.error_message, last_failed_at = now()
