-- A referral's probable matches as the signed-in staff member may see them (authorised in the function).
SELECT match_id, other, other_status, other_region, other_received_at, holder, score, reasons, status, found_at
FROM refnet_youth_matches_of($1)
