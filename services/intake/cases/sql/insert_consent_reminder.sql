-- This lead's reminder for this expiry date is done ($4: the event it went out as, or NULL when a shorter
-- lead went out instead); never again for the same expiry.
INSERT INTO consent_reminders (referral_id, lead_days, expires_at, event_id, case_manager_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
