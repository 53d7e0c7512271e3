-- The state of an offer made to this case manager (nothing when it is not theirs).
SELECT state FROM assignments WHERE id = $1 AND case_manager_id = $2
