-- Signed checkpoints of the event log's head (issue 13, section 4). The hash chain links each
-- stream's events, but removing the log's last events leaves every chain intact; a checkpoint,
-- an HMAC under the audit key over a position and the hash of the event there, lets
-- `audit verify` tell that the log once reached further, or that the event at a checked
-- position changed. Every checkpoint is kept (one per checkpoint interval in which the log
-- moved) and, as the log itself, the table refuses UPDATE and DELETE: every kept checkpoint is
-- one more position an insider cannot rewrite unseen.
CREATE TABLE audit_checkpoints (
    position        INTEGER NOT NULL,  -- the log's head when signed
    chain_hash      TEXT    NOT NULL,  -- hex SHA-256 of the event at `position` (its chain link)
    signed_at       INTEGER NOT NULL,  -- microseconds since the epoch, by the service's clock
    key_fingerprint TEXT    NOT NULL,  -- names the audit key without revealing it
    mac             TEXT    NOT NULL,  -- hex HMAC-SHA256 over position, chain hash and signed_at
    PRIMARY KEY (position, key_fingerprint)
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE is refused');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE is refused');
END;
