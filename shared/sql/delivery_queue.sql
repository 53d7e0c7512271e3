-- notify's queue gauges (pending, dead per channel) from the one definition (migration 0013).
SELECT channel, metric, n FROM refnet_delivery_counts() WHERE metric IN ('pending', 'dead')
