-- Every account (admins), newest first; a case manager's regions come from their routing profile.
SELECT s.id, s.email, s.display_name, s.role, s.region, s.partner_id, s.deactivated_at IS NULL AS active,
       s.password_change_required, s.created_at, coalesce(c.regions, CASE WHEN s.region IS NULL THEN '{}'::text[]
       ELSE ARRAY[s.region] END) AS regions
FROM staff s LEFT JOIN case_managers c ON c.staff_id = s.id
ORDER BY s.created_at DESC, s.id
