-- The rotation acts as the system (row-level security's system_all), transaction-locally.
SELECT set_config('app.role', 'system', true), set_config('app.actor_id', $1, true)
