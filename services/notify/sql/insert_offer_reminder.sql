-- One reminder per offer, however many notify processes sweep: no row back means already reminded.
INSERT INTO offer_reminders (assignment_id, event_id) VALUES ($1, $2)
ON CONFLICT (assignment_id) DO NOTHING
RETURNING 1
