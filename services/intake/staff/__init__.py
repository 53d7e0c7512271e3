"""Staff: sign-in for tokens, and the case manager roster routing reads."""
