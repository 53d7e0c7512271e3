-- What the database says of the referral an event names (notify never takes the event's word for it).
SELECT partner_id, status, region, urgency FROM referrals WHERE id = $1
