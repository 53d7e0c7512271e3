UPDATE assignments SET state = 'cancelled', responded_at = now() WHERE id = $1
