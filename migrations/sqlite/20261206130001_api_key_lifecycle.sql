-- API keys have a lifecycle (issue 13): an optional expiry set at creation, and a revocation.
-- Both are projected from the key's stream, so a rebuild restores them.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;

-- When each key last authorised a call, as `spse-totp apikey list` and the console show it.
-- Not a projection: no event records a use (one per request would swamp the log), so no
-- projector owns this table and a rebuild, which empties only projectors' tables, keeps it.
-- Each instance writes a key's row at most once a minute.
CREATE TABLE api_key_usage (
    key_id       TEXT   PRIMARY KEY,
    last_used_at BIGINT NOT NULL
);
