-- The helpdesk's search by User ID prefix or user type (GET /v1/helpdesk/events): such a
-- filter is a range, which an index does not return in position order. Grouping the log into
-- buckets of 16,384 positions (the constant BUCKET_ROWS in projections/src/audit_log.rs) makes
-- the filter one short range per bucket, walked newest bucket first until a page is full. The
-- time comes along so that a time window needs no row reads either.
CREATE INDEX audit_log_by_bucket_account
    ON audit_log ((position / 16384), user_type, user_id, recorded_at, position);
