-- Every master key of the keyring has an epoch row (created now when first seen), so sealers lock it.
INSERT INTO pii_key_epochs (key_id) SELECT unnest($1::text[]) ON CONFLICT (key_id) DO NOTHING
