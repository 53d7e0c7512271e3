-- Probable matches found at intake ($2 the new referrals, $3 the earlier ones), for staff to link or
-- dismiss: one statement for a batch's matches. $5 holds each match's reasons comma-joined (a
-- two-dimensional array cannot be unnested row by row; the reasons are fixed words without commas).
INSERT INTO youth_matches (id, referral_id, other_referral_id, score, reasons)
SELECT m.id, m.referral_id, m.other_referral_id, m.score, string_to_array(m.reasons, ',')
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::real[], $5::text[])
    AS m (id, referral_id, other_referral_id, score, reasons)
