-- `login_sessions` at about a third of its bytes (issue 14, item 6), the same answers.
--
-- The login id as its 16 bytes. The account, client address and user agent as ids in `terms`:
-- each recurs on many logins, and the account (the stream name) also fills the index readers
-- find an account's logins by. Stage, status and method as small codes (below, and in
-- projections/src/login_sessions.rs, which alone reads and writes them). `user_type` and
-- `user_id` are gone: the stream name holds both (`account-{user_type}-{USER_ID}`).
--
-- WITHOUT ROWID: the row lives in the primary key's tree, so the login id is stored once rather
-- than in the row and again in a separate index; login ids are UUID v7, time-ordered, so new
-- rows go to the end of that tree and its pages stay full.
--
-- SQLite cannot change a column's type, so the table is copied once, converting as it goes. An
-- old row with a value no code stands for fails the copy (NOT NULL) rather than losing it.
INSERT INTO terms (term)
SELECT term FROM (
    SELECT stream AS term FROM login_sessions
    UNION SELECT client_ip FROM login_sessions
    UNION SELECT user_agent FROM login_sessions
)
WHERE term IS NOT NULL AND term NOT IN (SELECT term FROM terms);

CREATE TABLE login_sessions_lean (
    login_id        BLOB    PRIMARY KEY, -- the UUID's 16 bytes
    account         INTEGER NOT NULL,    -- terms.id of the stream name
    stage           INTEGER NOT NULL,    -- 0 activation, 1 approval
    status          INTEGER NOT NULL,    -- 0 awaiting_activation, 1 awaiting_approval, 2 approved,
                                         -- 3 denied, 4 expired, 5 cancelled
    approval_number INTEGER,
    client_ip       INTEGER,             -- terms.id
    user_agent      INTEGER,             -- terms.id
    started_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    decided_at      INTEGER,
    method          INTEGER              -- 0 code, 1 device
) WITHOUT ROWID;

INSERT INTO login_sessions_lean (login_id, account, stage, status, approval_number, client_ip,
                                 user_agent, started_at, expires_at, decided_at, method)
SELECT unhex(replace(login_id, '-', '')),
       (SELECT id FROM terms WHERE term = l.stream),
       CASE stage WHEN 'activation' THEN 0 WHEN 'approval' THEN 1 END,
       CASE status WHEN 'awaiting_activation' THEN 0 WHEN 'awaiting_approval' THEN 1
                   WHEN 'approved' THEN 2 WHEN 'denied' THEN 3 WHEN 'expired' THEN 4
                   WHEN 'cancelled' THEN 5 END,
       approval_number,
       (SELECT id FROM terms WHERE term = l.client_ip),
       (SELECT id FROM terms WHERE term = l.user_agent),
       started_at, expires_at, decided_at,
       CASE method WHEN 'code' THEN 0 WHEN 'device' THEN 1 END
FROM login_sessions AS l;

DROP TABLE login_sessions;
ALTER TABLE login_sessions_lean RENAME TO login_sessions;
CREATE INDEX login_sessions_by_account ON login_sessions (account, status);
-- Only the logins still waiting, as before: the expiry sweep's.
CREATE INDEX login_sessions_pending_expiry ON login_sessions (expires_at) WHERE status IN (0, 1);
