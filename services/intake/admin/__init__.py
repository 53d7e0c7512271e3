"""Administration: dashboard figures, outbound deliveries, bus dead letters, audit, the routing queue."""
