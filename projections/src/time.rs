//! Instants are stored as microseconds since the Unix epoch (an integer both engines index).

use chrono::{DateTime, Utc};

pub fn to_db(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_db(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default()
}
