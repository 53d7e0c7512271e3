"""Partners: their API keys (admin) and their webhook endpoints (the partners themselves)."""
