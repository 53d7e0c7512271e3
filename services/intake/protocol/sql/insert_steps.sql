-- A new referral's protocol steps, in the submitter's transaction (one statement for all of them).
INSERT INTO protocol_steps (referral_id, partner_id, protocol_version, code, position, roles, clock_from,
                            clock_minutes, reference_required, outcomes, escalate_to, due_at)
SELECT $1, $2, $3, s.code, s.position, string_to_array(s.roles, ','), s.clock_from, s.clock_minutes,
       s.reference_required, coalesce(string_to_array(nullif(s.outcomes, ''), ','), '{}'),
       coalesce(string_to_array(nullif(s.escalate_to, ''), ','), '{}'), s.due_at
FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bool[], $10::text[], $11::text[],
            $12::timestamptz[])
     AS s (code, position, roles, clock_from, clock_minutes, reference_required, outcomes, escalate_to, due_at)
