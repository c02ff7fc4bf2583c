-- The event log: the only source of truth. Everything else in this file can be rebuilt from it
-- (projections) or is deliberately outside it (sealed secrets, snapshots, checkpoints).
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    CONSTRAINT events_stream_version UNIQUE (stream, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

-- TOTP secrets, sealed with XChaCha20-Poly1305 under the master key. Never in the log.
CREATE TABLE vault_secrets (
    enrollment_id TEXT    PRIMARY KEY,
    stream        TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    nonce         BLOB    NOT NULL,
    sealed        BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX vault_secrets_expiry ON vault_secrets (expires_at);

-- Folded account state every so often, so loading an account never replays its whole history.
CREATE TABLE snapshots (
    stream  TEXT    PRIMARY KEY,
    version INTEGER NOT NULL,
    schema  INTEGER NOT NULL,
    state   TEXT    NOT NULL
);

-- Each projector's position in the log, advanced in the same transaction as its writes.
CREATE TABLE projection_checkpoints (
    projector  TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events a projector could not apply; parked so they do not block the ones after them.
CREATE TABLE projection_failures (
    projector  TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    failed_at  INTEGER NOT NULL,
    PRIMARY KEY (projector, position)
);

CREATE TABLE accounts (
    stream          TEXT    PRIMARY KEY,
    user_type       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    email           TEXT,
    name            TEXT,
    totp_status     TEXT    NOT NULL,
    failed_attempts INTEGER NOT NULL,
    locked_until    INTEGER,
    registered_at   INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- The current device per account. The unique token digest is what makes "one active device"
-- visible to readers; the account stream's optimistic concurrency is what enforces it.
CREATE TABLE device_bindings (
    stream        TEXT    PRIMARY KEY,
    user_type     TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    device_id     TEXT    NOT NULL,
    enrollment_id TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    platform      TEXT,
    method        TEXT    NOT NULL,
    token_sha256  TEXT    UNIQUE,
    activated_at  INTEGER NOT NULL
);

CREATE TABLE login_sessions (
    login_id        TEXT    PRIMARY KEY,
    stream          TEXT    NOT NULL,
    user_type       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    stage           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    approval_number INTEGER,
    client_ip       TEXT,
    user_agent      TEXT,
    started_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    method          TEXT
);
CREATE INDEX login_sessions_by_account ON login_sessions (stream, status);
CREATE INDEX login_sessions_pending_expiry ON login_sessions (status, expires_at);

-- One row per event, for the helpdesk's filters.
CREATE TABLE audit_log (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    user_type      TEXT,
    user_id        TEXT,
    event_type     TEXT    NOT NULL,
    actor_kind     TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    client_ip      TEXT,
    user_agent     TEXT,
    correlation_id TEXT,
    recorded_at    INTEGER NOT NULL,
    summary        TEXT    NOT NULL
);
CREATE INDEX audit_log_by_account ON audit_log (user_type, user_id, position);
CREATE INDEX audit_log_by_type ON audit_log (event_type, position);
CREATE INDEX audit_log_by_time ON audit_log (recorded_at);
CREATE INDEX audit_log_by_ip ON audit_log (client_ip, position);

CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_sha256 TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
