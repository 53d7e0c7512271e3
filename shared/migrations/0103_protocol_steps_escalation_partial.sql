-- A minor's referral writes its protocol steps with it (0070), about three rows per referral on average,
-- and each had an entry in the unique index of escalation_event_id although that is NULL until a step
-- is escalated (few ever are). The same uniqueness with a partial index: NULLs never conflicted, and
-- the column is only ever written by mark_escalated.sql, never looked up. One index entry fewer per
-- step written (issue 19).
CREATE UNIQUE INDEX protocol_steps_escalation_event ON protocol_steps (escalation_event_id)
    WHERE escalation_event_id IS NOT NULL;
ALTER TABLE protocol_steps DROP CONSTRAINT protocol_steps_escalation_event_id_key;
