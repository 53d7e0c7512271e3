-- Counters and queue sizes per channel and metric (migration 0013): the one definition intake reads too.
SELECT channel, metric, n FROM refnet_delivery_counts()
