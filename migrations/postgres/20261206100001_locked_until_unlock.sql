-- A lock that only a helpdesk unlock lifts (issue 13, SPSE_TOTP_MAX_LOCKS): after that many locks
-- in a row without a success, the account stays locked whatever `locked_until` says. No account
-- can be so locked before this column exists, so every existing row is rightly 0.
ALTER TABLE accounts ADD COLUMN locked_until_unlock BIGINT NOT NULL DEFAULT 0;
