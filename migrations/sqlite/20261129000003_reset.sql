-- Reset and recovery: captchas, rate-limit counters, the reset_requests projection, and the
-- mail dispatcher's lease.

-- "Kode Keamanan": the answer only as an HMAC under a key derived from the master key.
CREATE TABLE captchas (
    captcha_id  TEXT    PRIMARY KEY,
    answer_hmac TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX captchas_expiry ON captchas (expires_at);

-- Fixed-window counters (per client address, ...), upserted atomically by every instance.
CREATE TABLE rate_limits (
    bucket       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);

-- Projection: one row per emailed reset link, with what became of it and of its email.
CREATE TABLE reset_requests (
    request_id     TEXT    PRIMARY KEY,
    stream         TEXT    NOT NULL,
    user_type      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    client_ip      TEXT,
    requested_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    status         TEXT    NOT NULL, -- pending | used | superseded
    decided_at     INTEGER,
    email_status   TEXT    NOT NULL, -- queued | sent | retrying | failed
    email_attempts INTEGER NOT NULL,
    email_error    TEXT,
    email_at       INTEGER
);
CREATE INDEX reset_requests_by_account ON reset_requests (stream, requested_at);

-- One mail dispatcher per database at a time: whoever holds an unexpired lease sends.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

-- The dispatcher follows the log from its own checkpoint. A database that already has history
-- starts it at the end: mail about events from before this version would be stale news.
INSERT INTO projection_checkpoints (projector, position, updated_at)
SELECT 'mail_dispatcher', COALESCE(MAX(position), 0), 0 FROM events;
