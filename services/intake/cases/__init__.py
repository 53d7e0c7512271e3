"""Assignments and cases: offers answered, case work, consent and PII, follow-up reminders."""
