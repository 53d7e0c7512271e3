"""FHIR R4 for partners whose systems speak it: a transaction Bundle becomes a referral; its Task follows it."""
