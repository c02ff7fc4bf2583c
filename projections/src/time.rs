//! Instants are stored as microseconds since the Unix epoch (an integer both engines index).

use chrono::{DateTime, Utc};
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::decode::Decode;
use sqlx::error::BoxDynError;
use sqlx::types::Type;

pub fn to_db(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_db(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default()
}

/// An instant column as stored, so a row struct can derive `sqlx::FromRow` and still hold
/// `DateTime<Utc>`: `#[sqlx(try_from = "Micros")]`. The `Any` driver decodes no chrono type.
pub struct Micros(i64);

/// A nullable instant column: `#[sqlx(try_from = "MaybeMicros")]` on an `Option<DateTime<Utc>>`.
pub struct MaybeMicros(Option<i64>);

impl From<Micros> for DateTime<Utc> {
    fn from(stored: Micros) -> Self {
        from_db(stored.0)
    }
}

impl From<MaybeMicros> for Option<DateTime<Utc>> {
    fn from(stored: MaybeMicros) -> Self {
        stored.0.map(from_db)
    }
}

impl Type<Any> for Micros {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl Type<Any> for MaybeMicros {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Micros {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        <i64 as Decode<'r, Any>>::decode(value).map(Micros)
    }
}

impl<'r> Decode<'r, Any> for MaybeMicros {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        <Option<i64> as Decode<'r, Any>>::decode(value).map(MaybeMicros)
    }
}
