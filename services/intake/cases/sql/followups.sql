-- A referral's follow-up schedule.
SELECT * FROM followups WHERE referral_id = $1
