-- A partner's active endpoints subscribed to FHIR `task.updated` ($2) and not also to
-- referral.status_changed ($3): one delivery per status change and endpoint, that one wins.
SELECT id FROM webhook_endpoints
WHERE partner_id = $1 AND state = 'active' AND $2 = ANY (events) AND NOT ($3 = ANY (events))
