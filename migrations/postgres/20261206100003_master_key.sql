-- The master key's fingerprint (issue 13): the first 8 bytes of its SHA-256, in hex, recorded
-- with the first sealed secret, so a process started with another key stops at once (exit code 2)
-- instead of answering 500 to every activation that crosses instances. Never the key itself.
CREATE TABLE master_key (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT    NOT NULL,
    recorded_at BIGINT NOT NULL -- microseconds since the Unix epoch, UTC
);
-- A database that already holds sealed secrets gets the fingerprint they were sealed under.
INSERT INTO master_key (id, fingerprint, recorded_at)
SELECT 1, key_id, created_at FROM vault_secrets ORDER BY created_at LIMIT 1;
