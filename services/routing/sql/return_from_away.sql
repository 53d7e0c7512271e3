-- Case managers back from leave: "away until D" means back on D, on the agency's calendar.
UPDATE case_managers
SET status = 'active', away_until = NULL, updated_at = now()
WHERE status = 'away' AND away_until <= (now() AT TIME ZONE 'America/Los_Angeles')::date
RETURNING staff_id, regions
