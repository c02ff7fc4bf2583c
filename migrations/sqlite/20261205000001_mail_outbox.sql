-- Mail without head-of-line blocking: one row per message owed, each with its own schedule.
--
-- The mail follower reads the log after its checkpoint ('mail_dispatcher', the same row the
-- one-at-a-time dispatcher kept) and puts a row here for each event that calls for a message,
-- moving the checkpoint in the same transaction. The sender takes rows whose next attempt is
-- due, in any order, so a recipient whose server keeps answering 4xx delays nobody else. A row
-- is deleted once its outcome (sent, or given up at its deadline) is an event in the account's
-- stream; the log stays the record of every attempt.
--
-- Existing deployments lose nothing and send nothing twice: every event up to the old
-- checkpoint was sent or given up; the events after it are put here by the first run, and the
-- sender reads the account's stream for an outcome before each attempt (as the dispatcher did),
-- so a message sent before the upgrade but not yet checkpointed is only marked done.
CREATE TABLE mail_outbox (
    cause_event_id  TEXT    PRIMARY KEY,
    stream          TEXT    NOT NULL,
    version         INTEGER NOT NULL, -- the cause's version in its stream
    position        INTEGER NOT NULL, -- the cause's global position
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, -- microseconds; also a claim while a send is under way
    deadline        INTEGER NOT NULL, -- past it the message is given up
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at);

-- Leadership is now the log follower's: on SQLite the one process, on PostgreSQL an advisory
-- lock. The mail lease row is no longer read.
DELETE FROM leases WHERE name = 'mail_dispatcher';
