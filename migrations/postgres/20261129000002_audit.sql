-- Tamper evidence: each event's SHA-256 chained to the previous event of its stream (see
-- commands/src/store/chain.rs). A database created with this migration has no unchained rows.
ALTER TABLE events ADD COLUMN hash TEXT;

-- User ID prefixes are searched as ranges over the upper-case IDs (`user_id >= 'VENDOR2' AND
-- user_id < 'VENDOR3'`), which is the prefix only under byte-wise comparison: whatever the
-- database's collation, this column compares as "C".
ALTER TABLE audit_log ALTER COLUMN user_id TYPE TEXT COLLATE "C";

-- The helpdesk's search (GET /v1/helpdesk/events): newest first by position, so every filter
-- has an index ending in position that serves the filter and the order together.
CREATE INDEX audit_log_by_user_id ON audit_log (user_id, position);
CREATE INDEX audit_log_by_actor ON audit_log (actor_kind, actor, position);
CREATE INDEX audit_log_by_type_account ON audit_log (event_type, user_type, user_id, position);
CREATE INDEX audit_log_by_type_time ON audit_log (event_type, recorded_at);
