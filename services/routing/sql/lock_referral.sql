-- One referral, locked for the rest of the transaction.
SELECT * FROM referrals WHERE id = $1 FOR NO KEY UPDATE
