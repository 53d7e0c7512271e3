-- Consent scopes that mean something (issue 16, contract v1.1): a closed list, and one place that says
-- whether a referral's consent covers a scope now.

-- New and renewed consents name known scopes only. Rows written under the old open list stay exactly as
-- recorded (NOT VALID): a consent record is what the youth said, and is never rewritten.
ALTER TABLE consents ADD CONSTRAINT consents_scope_known
    CHECK (scope <@ ARRAY['case_management', 'evaluation', 'share_status_with_referrer']::text[]) NOT VALID;

-- Whether the referral's consent covers `wanted` now: the youth gave that scope and has not withdrawn
-- (an unrenewed expiry is recorded as a withdrawal, and counts as one here as everywhere else).
-- Used by the evaluation cohort (evaluators never read the consents table), the partner's status view
-- and notify's status webhooks. SECURITY DEFINER with the system identity for the call only (the SET
-- clause restores the caller's on exit), so it works whether or not the owner is subject to row-level
-- security; it answers one bit about a referral id the caller already holds.
CREATE FUNCTION refnet_consent_covers(rid uuid, wanted text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    SELECT EXISTS (
        SELECT 1 FROM consents c
        WHERE c.referral_id = rid AND c.withdrawn_at IS NULL AND wanted = ANY (c.scope)
    )
$$;
REVOKE ALL ON FUNCTION refnet_consent_covers(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_consent_covers(uuid, text) TO refnet_app;
