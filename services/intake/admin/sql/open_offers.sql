-- Offers waiting for an answer, and those whose deadline is less than an hour away.
SELECT count(*)::int AS open, count(*) FILTER (WHERE respond_by < now() + interval '1 hour')::int AS soon
FROM assignments
WHERE state = 'offered'
