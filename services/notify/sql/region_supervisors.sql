-- The supervisors who work a region's queue; a referral with no region (out of area) is everyone's.
SELECT id FROM staff WHERE role = 'supervisor' AND deactivated_at IS NULL AND ($1::text IS NULL OR region = $1)
