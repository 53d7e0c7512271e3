-- PII master key epochs (`refnet keys rotate`, the daily rotation): when each master key was made and when
-- it was destroyed. A data key wrapped by a destroyed master key can never be written again, so a sealer
-- still holding an old keyring fails loudly instead of writing a referral nobody could ever open.

CREATE TABLE pii_key_epochs (
    key_id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz
);
-- Not FORCEd: the owner's trigger function below must see every row whatever the caller's identity.
ALTER TABLE pii_key_epochs ENABLE ROW LEVEL SECURITY;
CREATE POLICY system_all ON pii_key_epochs
    USING ((SELECT refnet_role()) = 'system') WITH CHECK ((SELECT refnet_role()) = 'system');

-- FOR SHARE on the epoch row: a destroying transaction (UPDATE ... destroyed_at) waits for sealers already
-- past this check, then re-wraps what they wrote; sealers after it see destroyed_at and fail.
CREATE FUNCTION refnet_key_epoch_live() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    destroyed timestamptz;
BEGIN
    SELECT e.destroyed_at INTO destroyed FROM public.pii_key_epochs e WHERE e.key_id = NEW.key_id FOR SHARE;
    IF destroyed IS NOT NULL THEN
        RAISE EXCEPTION 'PII master key % was destroyed at %', NEW.key_id, destroyed
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION refnet_key_epoch_live() FROM PUBLIC;

CREATE TRIGGER referral_keys_live_epoch BEFORE INSERT OR UPDATE OF key_id ON referral_keys
    FOR EACH ROW EXECUTE FUNCTION refnet_key_epoch_live();
