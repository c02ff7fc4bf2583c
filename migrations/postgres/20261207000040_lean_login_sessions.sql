-- `login_sessions` in fewer bytes (issue 14, item 6), the same answers; the SQLite migration of
-- the same name says why each column is what it is. The projection's SQL is shared by both
-- engines, so the columns mean the same here: the login id as its 16 bytes, the account, client
-- address and user agent as ids in `terms`, stage, status and method as small codes.
--
-- A column cannot take its new value from a subquery in ALTER TABLE, so the table is copied. An
-- old row with a value no code stands for fails the copy (NOT NULL) rather than losing it.
INSERT INTO terms (term)
SELECT term FROM (
    SELECT stream FROM login_sessions
    UNION SELECT client_ip FROM login_sessions
    UNION SELECT user_agent FROM login_sessions
) AS used (term)
WHERE term IS NOT NULL
ON CONFLICT (term) DO NOTHING;

CREATE TABLE login_sessions_lean (
    login_id        BYTEA    PRIMARY KEY, -- the UUID's 16 bytes
    account         BIGINT   NOT NULL,    -- terms.id of the stream name
    stage           SMALLINT NOT NULL,    -- 0 activation, 1 approval
    status          SMALLINT NOT NULL,    -- 0 awaiting_activation, 1 awaiting_approval,
                                          -- 2 approved, 3 denied, 4 expired, 5 cancelled
    approval_number BIGINT,
    client_ip       BIGINT,               -- terms.id
    user_agent      BIGINT,               -- terms.id
    started_at      BIGINT   NOT NULL,
    expires_at      BIGINT   NOT NULL,
    decided_at      BIGINT,
    method          SMALLINT              -- 0 code, 1 device
);

INSERT INTO login_sessions_lean (login_id, account, stage, status, approval_number, client_ip,
                                 user_agent, started_at, expires_at, decided_at, method)
SELECT decode(replace(login_id, '-', ''), 'hex'),
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
ALTER INDEX login_sessions_lean_pkey RENAME TO login_sessions_pkey;
CREATE INDEX login_sessions_by_account ON login_sessions (account, status);
-- Only the logins still waiting, as before: the expiry sweep's.
CREATE INDEX login_sessions_pending_expiry ON login_sessions (expires_at) WHERE status IN (0, 1);
