-- Steps whose clock runs from the step just completed ($2) get their due time ($3 = its completion time).
UPDATE protocol_steps
SET due_at = $3::timestamptz + make_interval(mins => clock_minutes)
WHERE referral_id = $1 AND clock_from = $2 AND clock_minutes IS NOT NULL AND completed_at IS NULL
