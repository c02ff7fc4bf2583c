-- Console operators (issue 15).
--
-- operators: the projection of the operator streams ('operator-{username}'), what the console
-- and 'spse-totp operator list' read. Rebuilt from the log like every projection.
CREATE TABLE operators (
    username         TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    status           TEXT    NOT NULL, -- pending, active, disabled
    setup_id         TEXT,             -- the setup link that works, until used or replaced
    setup_expires_at BIGINT,
    failed_attempts  BIGINT  NOT NULL,
    locked_until     BIGINT,
    created_at       BIGINT  NOT NULL,
    last_sign_in_at  BIGINT,
    updated_at       BIGINT  NOT NULL
);

-- Beside the log, as the vault is: the Argon2id hash (a PHC string) of each operator's password.
-- A hash is a secret's stand-in and never enters an event; the stream records only that a
-- password was set.
CREATE TABLE operator_credentials (
    username      TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    set_at        BIGINT  NOT NULL
);

-- Console sessions, in the database so that every instance sees a sign-out or a disabled
-- operator at once. The cookie holds a random id; only its SHA-256 is kept here.
CREATE TABLE console_sessions (
    session_sha256 TEXT    PRIMARY KEY,
    username       TEXT    NOT NULL,
    csrf_token     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    last_seen_at   BIGINT  NOT NULL
);
CREATE INDEX console_sessions_username ON console_sessions (username);
