//! `enrollments`: every QR code ever handed out, by its enrollment id: whose it is and until when
//! it could be scanned. The vault forgets an expired QR code's secret and the account forgets the
//! enrollment once its login ends, yet an app that scans it late must still hear "expired" (410)
//! rather than "no such QR code" (404), for as long as the id is known. It holds no secret.

use chrono::{DateTime, Utc};
use spse_totp_domain::{AccountEvent, EnrollmentId};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{from_db, to_db};

pub struct EnrollmentsProjector;

impl Projector for EnrollmentsProjector {
    fn name(&self) -> &'static str {
        "enrollments"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["enrollments"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Account(
            _,
            AccountEvent::EnrollmentStarted {
                enrollment_id,
                expires_at,
                ..
            },
        ) = decoded
        else {
            return Vec::new();
        };
        vec![sql!(
            "INSERT INTO enrollments (enrollment_id, stream, expires_at) VALUES ($1, $2, $3)",
            enrollment_id.to_string(),
            recorded.stream.as_str(),
            to_db(*expires_at),
        )]
    }
}

/// Until when the QR code of `enrollment_id` could be scanned, if it was ever handed out.
pub async fn expires_at(
    pool: &AnyPool,
    enrollment_id: EnrollmentId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let micros: Option<i64> =
        sqlx::query_scalar("SELECT expires_at FROM enrollments WHERE enrollment_id = $1")
            .bind(enrollment_id.to_string())
            .fetch_optional(pool)
            .await?;
    Ok(micros.map(from_db))
}
