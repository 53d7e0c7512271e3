-- What the database says of the assignment an event names.
SELECT referral_id, case_manager_id, state, respond_by FROM assignments WHERE id = $1
