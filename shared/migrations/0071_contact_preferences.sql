-- The youth's safe contact preferences (issue 18): the channel and whether a voicemail may be left are
-- plain (shown on the offer, before anyone reads the youth's details); the safe times and contact notes
-- are PII and travel sealed with the rest of the youth's details.
ALTER TABLE referrals ADD COLUMN contact_channel text
    CHECK (contact_channel IN ('phone', 'sms', 'email', 'in_person', 'through_referrer'));
ALTER TABLE referrals ADD COLUMN contact_voicemail_ok boolean;
