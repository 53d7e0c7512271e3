-- One assignment as its case manager sees it after answering.
SELECT id, referral_id, state, offered_at, respond_by, responded_at FROM assignments WHERE id = $1
