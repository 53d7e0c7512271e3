"""Referrals: partners submit them (validated, idempotent, outboxed); callers read what they may see."""
