-- Staff-written text about a youth (issue 14, finding 5): a case manager's words when declining an offer,
-- an administrator's break-glass reason and the reason for a manual assignment are sealed with the
-- referral's own data key, so they are shredded with the youth's details; the coded part stays readable,
-- and audit rows, assignments and routing decisions name the note by id.

CREATE TABLE referral_notes (
    id              uuid PRIMARY KEY,
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    kind            text NOT NULL CHECK (kind IN ('decline_reason', 'break_glass_reason', 'manual_assignment_reason')),
    -- AES-256-GCM under the referral's data key, bound to the referral and the note's id.
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL,
    written_by      uuid NOT NULL REFERENCES staff (id),
    written_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_notes_referral ON referral_notes (referral_id);

ALTER TABLE referral_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE referral_notes FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON referral_notes
    USING ((SELECT refnet_role()) = 'system') WITH CHECK ((SELECT refnet_role()) = 'system');
-- The writer adds their own notes; only administrators read them back (still sealed: reading the words
-- takes the referral's data key, which break-glass or the assignment opens).
CREATE POLICY writer_insert ON referral_notes FOR INSERT
    WITH CHECK ((SELECT refnet_role()) IN ('case_manager', 'admin') AND written_by = (SELECT refnet_actor()));
CREATE POLICY admin_read ON referral_notes FOR SELECT USING ((SELECT refnet_role()) = 'admin');

-- A decline keeps its code in decline_reason and the case manager's own words, if any, in a sealed note.
ALTER TABLE assignments ADD COLUMN decline_note_id uuid REFERENCES referral_notes (id);

-- Free text written before this migration cannot be sealed here (the keys live outside the database):
-- keep its code and drop the words, so what could name a youth does not outlive the shred.
DO $$
BEGIN
    -- Row-level security is forced on the owner too: act as the system for this one statement.
    PERFORM set_config('app.role', 'system', true);
    UPDATE assignments
    SET decline_reason = CASE
            WHEN split_part(decline_reason, ':', 1) IN ('capacity', 'needs', 'language', 'conflict', 'other')
            THEN split_part(decline_reason, ':', 1)
            ELSE 'other' END
    WHERE decline_reason IS NOT NULL
      AND decline_reason NOT IN ('capacity', 'needs', 'language', 'conflict', 'other');
END $$;
