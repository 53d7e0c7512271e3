-- Claim up to $1 due deliveries for one attempt each: count the attempt and push next_attempt_at out
-- by a lease ($2 s), so a worker that dies mid-attempt leaves the row to be retried after it.
-- Deliveries to a throttled endpoint wait. Returns what sending needs, in one round trip.
WITH due AS (
    SELECT d.id
    FROM deliveries d
    LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
    WHERE d.state IN ('pending', 'failed')
      AND d.next_attempt_at <= now()
      AND (e.throttled_until IS NULL OR e.throttled_until <= now())
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
    SET attempts = d.attempts + 1,
        next_attempt_at = now() + make_interval(secs => $2),
        updated_at = now()
    FROM due
    WHERE d.id = due.id
    RETURNING d.*
)
SELECT c.id, c.event_id, c.kind, c.channel, c.recipient_id, c.endpoint_id, c.staff_id, c.partner_id,
       c.referral_id, c.assignment_id, c.payload, c.attempts, c.round_start, c.created_at,
       e.url, e.state AS endpoint_state, e.secret_sealed,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_sealed END AS previous_secret_sealed,
       r.status AS referral_status,
       a.state AS assignment_state,
       coalesce(f.completed_at IS NOT NULL, false) AS followup_recorded,
       -- A status webhook goes out only while the youth's consent still lets the referrer be told.
       CASE WHEN c.kind = 'referral.status_changed' THEN refnet_consent_covers(c.referral_id, $3) END AS status_shared,
       CASE c.channel WHEN 'email' THEN coalesce(s.email, p.contact_email) END AS email
FROM claimed c
LEFT JOIN webhook_endpoints e ON e.id = c.endpoint_id
LEFT JOIN referrals r ON r.id = c.referral_id
LEFT JOIN assignments a ON a.id = c.assignment_id
-- A follow-up reminder's event is the one intake's sweep stamped on the follow-up.
LEFT JOIN followups f ON c.kind = 'followup_due' AND f.reminder_event_id = c.event_id
LEFT JOIN staff s ON s.id = c.staff_id
LEFT JOIN partners p ON p.id = c.partner_id
