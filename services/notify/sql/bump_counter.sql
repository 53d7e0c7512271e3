-- Add to one shard of a counter (a random shard: no single hot row for concurrent dispatchers).
INSERT INTO delivery_counters (channel, metric, shard, value) VALUES ($1, $2, $3, $4)
ON CONFLICT (channel, metric, shard) DO UPDATE SET value = delivery_counters.value + excluded.value
