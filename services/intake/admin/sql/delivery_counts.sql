-- notify's delivery counters and queue sizes per channel (refnet_delivery_counts(), migration 0013).
SELECT channel, metric, n FROM refnet_delivery_counts()
