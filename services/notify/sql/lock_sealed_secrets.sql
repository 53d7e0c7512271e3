SELECT id, secret_sealed, previous_secret_sealed FROM webhook_endpoints WHERE state <> 'deleted' FOR UPDATE
