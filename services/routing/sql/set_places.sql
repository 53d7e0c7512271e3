-- A routing batch's places taken and given back, on rows it holds locked (lock_places.sql): each
-- count moves from $2 (as read under the lock) to $3, never above capacity for an active case manager.
UPDATE case_managers c SET active_count = t.new
FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t (staff_id, old, new)
WHERE c.staff_id = t.staff_id AND c.active_count = t.old
  AND (t.new <= t.old OR (c.status = 'active' AND t.new <= c.capacity))
RETURNING c.staff_id
