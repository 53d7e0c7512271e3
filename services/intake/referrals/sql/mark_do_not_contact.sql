-- The youth asked not to be contacted (rare at submission: a second statement, not a parameter of the
-- hot insert).
UPDATE referrals SET do_not_contact = true WHERE id = $1
