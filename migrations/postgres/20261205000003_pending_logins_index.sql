-- The expiry sweep looks only for logins still waiting (`streams_with_overdue`), which are a few
-- at any time; an index over every login ever started held one entry per login for ever.
DROP INDEX login_sessions_pending_expiry;
CREATE INDEX login_sessions_pending_expiry ON login_sessions (expires_at)
    WHERE status IN ('awaiting_activation', 'awaiting_approval');
