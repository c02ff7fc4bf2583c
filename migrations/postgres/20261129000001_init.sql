-- The PostgreSQL schema: the same tables as migrations/sqlite, with BIGINT for positions and
-- microsecond instants and BYTEA for sealed secrets.

-- The event log: the only source of truth.
CREATE TABLE events (
    position       BIGINT  PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        BIGINT  NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version BIGINT  NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    BIGINT  NOT NULL, -- microseconds since the Unix epoch, UTC
    CONSTRAINT events_stream_version UNIQUE (stream, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

-- The last position handed out. Every append locks this one row until it commits, so appends
-- commit one after another in position order: see commands/src/store/postgres.rs.
CREATE TABLE event_log_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    position BIGINT   NOT NULL
);
INSERT INTO event_log_head (id, position) VALUES (1, 0);

CREATE TABLE vault_secrets (
    enrollment_id TEXT    PRIMARY KEY,
    stream        TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    nonce         BYTEA   NOT NULL,
    sealed        BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX vault_secrets_expiry ON vault_secrets (expires_at);

CREATE TABLE snapshots (
    stream  TEXT    PRIMARY KEY,
    version BIGINT  NOT NULL,
    schema  BIGINT  NOT NULL,
    state   TEXT    NOT NULL
);

CREATE TABLE projection_checkpoints (
    projector  TEXT    PRIMARY KEY,
    position   BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE projection_failures (
    projector  TEXT    NOT NULL,
    position   BIGINT  NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    failed_at  BIGINT  NOT NULL,
    PRIMARY KEY (projector, position)
);

CREATE TABLE accounts (
    stream          TEXT    PRIMARY KEY,
    user_type       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    email           TEXT,
    name            TEXT,
    totp_status     TEXT    NOT NULL,
    failed_attempts BIGINT  NOT NULL,
    locked_until    BIGINT,
    registered_at   BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

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
    activated_at  BIGINT  NOT NULL
);

CREATE TABLE login_sessions (
    login_id        TEXT    PRIMARY KEY,
    stream          TEXT    NOT NULL,
    user_type       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    stage           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    approval_number BIGINT,
    client_ip       TEXT,
    user_agent      TEXT,
    started_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    decided_at      BIGINT,
    method          TEXT
);
CREATE INDEX login_sessions_by_account ON login_sessions (stream, status);
CREATE INDEX login_sessions_pending_expiry ON login_sessions (status, expires_at);

CREATE TABLE audit_log (
    position       BIGINT  PRIMARY KEY,
    stream         TEXT    NOT NULL,
    user_type      TEXT,
    user_id        TEXT,
    event_type     TEXT    NOT NULL,
    actor_kind     TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    client_ip      TEXT,
    user_agent     TEXT,
    correlation_id TEXT,
    recorded_at    BIGINT  NOT NULL,
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
    created_at BIGINT  NOT NULL
);
