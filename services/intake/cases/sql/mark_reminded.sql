-- The follow-up was reminded of, by this event: never again.
UPDATE followups SET reminded_at = now(), reminder_event_id = $3 WHERE referral_id = $1 AND point = $2
