-- Every sealed webhook secret still in use.
SELECT secret_sealed, previous_secret_sealed FROM webhook_endpoints WHERE state <> 'deleted'
