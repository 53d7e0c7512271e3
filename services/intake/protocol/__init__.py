"""The child-protection protocol: steps a referral of a minor triggers, tracked against their clocks."""
