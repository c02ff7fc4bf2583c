-- The enrollments projection (issue 13): every QR code handed out, so one scanned after its
-- expiry answers 410 enrollment_expired for as long as its id is known, even once the vault has
-- destroyed its secret. Filled from the log by the projection runner, like every projection.
CREATE TABLE enrollments (
    enrollment_id TEXT    PRIMARY KEY,
    stream        TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL -- microseconds since the Unix epoch, UTC
);
