-- The supervisors of a region (who must know when nobody holds a case).
SELECT id FROM staff WHERE role = 'supervisor' AND region = $1
