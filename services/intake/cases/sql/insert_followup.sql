-- One scheduled outcome follow-up of an engaged case.
INSERT INTO followups (referral_id, point, due_on) VALUES ($1, $2, $3)
