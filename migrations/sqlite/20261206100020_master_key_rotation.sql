-- Master key rotation (issue 13, `spse-totp masterkey rotate`). While a rotation is under way
-- the master_key row names the key it goes to, and holds the old key sealed under the new one,
-- so an instance started with the new key can still open (and seal for) what the old key seals.
-- Each vault row gets a second sealing of the same secret under the new key beside the first;
-- the switch-over moves it into the first and clears these columns. Never a key in clear.
ALTER TABLE master_key ADD COLUMN rotating_to TEXT;
ALTER TABLE master_key ADD COLUMN rotation_started_at INTEGER;
ALTER TABLE master_key ADD COLUMN previous_key_nonce BLOB;
ALTER TABLE master_key ADD COLUMN previous_key_sealed BLOB;
ALTER TABLE vault_secrets ADD COLUMN next_key_id TEXT;
ALTER TABLE vault_secrets ADD COLUMN next_nonce BLOB;
ALTER TABLE vault_secrets ADD COLUMN next_sealed BLOB;
