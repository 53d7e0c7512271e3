-- First contact: the referral becomes engaged ($2: when the contact happened).
UPDATE referrals SET status = 'engaged', engaged_at = $2, updated_at = now() WHERE id = $1 RETURNING *
