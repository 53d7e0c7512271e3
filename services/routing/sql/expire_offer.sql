UPDATE assignments SET state = 'expired', responded_at = now() WHERE id = $1
