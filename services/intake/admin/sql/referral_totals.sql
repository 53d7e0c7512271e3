-- Referrals received since $1 (null: ever) by status, by region and by partner in one pass over the table
-- (three GROUP BYs read it three times). GROUPING() tells the sets apart: its bits are the columns a row
-- is NOT grouped by.
SELECT GROUPING(status, region, partner_id) AS g, status, region, partner_id, count(*)::int AS n
FROM referrals
WHERE $1::timestamptz IS NULL OR received_at >= $1
GROUP BY GROUPING SETS ((status), (region), (partner_id))
