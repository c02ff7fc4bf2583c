-- `audit_log` at half its bytes (issue 14, item 6): the strings that recur on many rows (user
-- type, event type, actor kind, actor, client address) become ids of `terms`, so the row and
-- every index that holds them shrink; the User ID stays text, as its prefix search is a range
-- of the text's order. The search maps its filter values to ids first and joins the texts back
-- for the page it answers (projections/src/audit_log.rs).
--
-- The indexes no longer name `position`: SQLite ends every index of a rowid table with the
-- rowid, which `position` is, so naming it stored it twice and ordered nothing more.
-- `audit_log_by_user_id` is gone: a User ID prefix without a user type is a range of
-- `audit_log_by_account` under each user type (`user_type IN (...)`).
INSERT INTO terms (term)
SELECT DISTINCT term FROM (
    SELECT user_type AS term FROM audit_log WHERE user_type IS NOT NULL
    UNION SELECT event_type FROM audit_log
    UNION SELECT actor_kind FROM audit_log
    UNION SELECT actor FROM audit_log
    UNION SELECT client_ip FROM audit_log WHERE client_ip IS NOT NULL
) AS used
WHERE NOT EXISTS (SELECT 1 FROM terms t WHERE t.term = used.term);

CREATE TABLE audit_log_by_terms (
    position    INTEGER PRIMARY KEY,
    user_type   INTEGER,
    user_id     TEXT,
    event_type  INTEGER NOT NULL,
    actor_kind  INTEGER NOT NULL,
    actor       INTEGER NOT NULL,
    client_ip   INTEGER,
    recorded_at INTEGER NOT NULL
);
INSERT INTO audit_log_by_terms
SELECT a.position,
       (SELECT id FROM terms WHERE term = a.user_type),
       a.user_id,
       (SELECT id FROM terms WHERE term = a.event_type),
       (SELECT id FROM terms WHERE term = a.actor_kind),
       (SELECT id FROM terms WHERE term = a.actor),
       (SELECT id FROM terms WHERE term = a.client_ip),
       a.recorded_at
FROM audit_log a;
DROP TABLE audit_log;
ALTER TABLE audit_log_by_terms RENAME TO audit_log;

-- The helpdesk's search (GET /v1/helpdesk/events): newest first by position, so every filter
-- has an index ending in position (here the rowid) that serves the filter and the order together.
CREATE INDEX audit_log_by_account ON audit_log (user_type, user_id);
CREATE INDEX audit_log_by_type ON audit_log (event_type);
CREATE INDEX audit_log_by_time ON audit_log (recorded_at);
CREATE INDEX audit_log_by_ip ON audit_log (client_ip);
CREATE INDEX audit_log_by_actor ON audit_log (actor_kind, actor);
CREATE INDEX audit_log_by_type_account ON audit_log (event_type, user_type, user_id);
-- A type within a time window: both on one index, so the window's positions need no row reads.
CREATE INDEX audit_log_by_type_time ON audit_log (event_type, recorded_at);
-- A User ID prefix or a bare user type, one short range per bucket of 16,384 positions (the
-- constant BUCKET_ROWS in projections/src/audit_log.rs); the time comes along so that a time
-- window needs no row reads either (see ..._audit_buckets.sql).
CREATE INDEX audit_log_by_bucket_account
    ON audit_log ((position / 16384), user_type, user_id, recorded_at);
