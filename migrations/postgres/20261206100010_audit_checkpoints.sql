-- Signed checkpoints of the event log's head (issue 13, section 4). The hash chain links each
-- stream's events, but removing the log's last events leaves every chain intact; a checkpoint,
-- an HMAC under the audit key over a position and the hash of the event there, lets
-- `audit verify` tell that the log once reached further, or that the event at a checked
-- position changed. Every checkpoint is kept (one per checkpoint interval in which the log
-- moved) and, as the log itself, the table refuses UPDATE, DELETE and TRUNCATE: every kept
-- checkpoint is one more position an insider cannot rewrite unseen.
CREATE TABLE audit_checkpoints (
    position        BIGINT NOT NULL,  -- the log's head when signed
    chain_hash      TEXT   NOT NULL,  -- hex SHA-256 of the event at `position` (its chain link)
    signed_at       BIGINT NOT NULL,  -- microseconds since the epoch, by the service's clock
    key_fingerprint TEXT   NOT NULL,  -- names the audit key without revealing it
    mac             TEXT   NOT NULL,  -- hex HMAC-SHA256 over position, chain hash and signed_at
    PRIMARY KEY (position, key_fingerprint)
);
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % is refused', TG_OP;
END
$$;
CREATE TRIGGER audit_checkpoints_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();
