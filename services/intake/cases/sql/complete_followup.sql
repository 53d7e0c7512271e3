-- The follow-up has (some of) its outcomes: no more reminders.
UPDATE followups SET completed_at = coalesce(completed_at, now()) WHERE referral_id = $1 AND point = $2
