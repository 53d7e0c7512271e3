SELECT contact_email FROM partners WHERE id = $1
