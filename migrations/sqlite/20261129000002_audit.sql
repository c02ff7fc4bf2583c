-- Tamper evidence: each event's SHA-256 chained to the previous event of its stream (see
-- commands/src/store/chain.rs). Rows written before this migration keep NULL: the verifier
-- reports them as legacy (unchained) rather than broken, and chains start at the first hashed
-- event. A database created with this migration never has such rows.
ALTER TABLE events ADD COLUMN hash TEXT;

-- The helpdesk's search (GET /v1/helpdesk/events): newest first by position, so every filter
-- has an index ending in position that serves the filter and the order together.
CREATE INDEX audit_log_by_user_id ON audit_log (user_id, position);
CREATE INDEX audit_log_by_actor ON audit_log (actor_kind, actor, position);
CREATE INDEX audit_log_by_type_account ON audit_log (event_type, user_type, user_id, position);
-- A type within a time window: both on one index, so the window's positions need no row reads.
CREATE INDEX audit_log_by_type_time ON audit_log (event_type, recorded_at);
