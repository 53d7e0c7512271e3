-- One outbound message; a second insert for the same event, recipient and channel does nothing.
INSERT INTO deliveries (id, event_id, kind, channel, recipient_id, endpoint_id, staff_id, partner_id,
                        referral_id, assignment_id, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
