-- A probable match found at intake ($2 the new referral, $3 the earlier one), for staff to link or dismiss.
INSERT INTO youth_matches (id, referral_id, other_referral_id, score, reasons) VALUES ($1, $2, $3, $4, $5)
