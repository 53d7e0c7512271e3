-- The youth's do-not-contact preference ($2).
UPDATE referrals SET do_not_contact = $2, updated_at = now() WHERE id = $1 RETURNING *
