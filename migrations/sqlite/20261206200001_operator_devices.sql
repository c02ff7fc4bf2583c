-- An operator's device bound through the device API, and the one sign-in waiting for it
-- (issue 15). Projected from the operator's stream; the device token is kept as its SHA-256
-- only, as device_bindings keeps a user's.
ALTER TABLE operators ADD COLUMN device_id TEXT;
ALTER TABLE operators ADD COLUMN device_label TEXT;
ALTER TABLE operators ADD COLUMN device_token_sha256 TEXT;
ALTER TABLE operators ADD COLUMN device_bound_at INTEGER;
ALTER TABLE operators ADD COLUMN sign_in_id TEXT;
ALTER TABLE operators ADD COLUMN sign_in_started_at INTEGER;
ALTER TABLE operators ADD COLUMN sign_in_expires_at INTEGER;
ALTER TABLE operators ADD COLUMN sign_in_client_ip TEXT;
ALTER TABLE operators ADD COLUMN sign_in_user_agent TEXT;
CREATE UNIQUE INDEX operators_device_token ON operators (device_token_sha256);
