-- Which instance runs write requests, and where the others forward theirs (SPSE_TOTP_CLUSTER_URL).
-- Written by the instance that holds the `requests` advisory lock; the lock, not this row, says
-- who leads: a row left by an instance that died only sends the others to an address that no
-- longer answers, and they run their requests themselves until the next one writes its own.
CREATE TABLE active_instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cluster_url TEXT NOT NULL
);
