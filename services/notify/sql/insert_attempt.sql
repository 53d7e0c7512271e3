INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status_code, error, outcome, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        CASE WHEN $8::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $8::float8) END)
