//! How every event enum is stored: its fields (the payload) beside its type name, rather than
//! serde's adjacently tagged form (`{"type": ..., "data": ...}`) that the enums derive. One pair
//! of functions moves between the two for all of them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::account::EventDecodeError;

/// The event's fields without its type tag.
pub fn payload_of<E: Serialize>(event: &E) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
        // A plain enum of plain fields always serialises to its tagged object.
        _ => Value::Null,
    }
}

/// The event named `event_type` with fields `payload`.
pub fn from_payload<E: DeserializeOwned>(
    event_type: &str,
    payload: Value,
) -> Result<E, serde_json::Error> {
    serde_json::from_value(serde_json::json!({ "type": event_type, "data": payload }))
}

/// As [`from_payload`], for an enum whose every event is still at schema version 1: a later
/// version is refused rather than guessed at, until an upcaster handles it.
pub fn from_stored_v1<E: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: Value,
) -> Result<E, EventDecodeError> {
    if schema_version != 1 {
        return Err(EventDecodeError::UnknownVersion {
            event_type: event_type.to_owned(),
            schema_version,
        });
    }
    from_payload(event_type, payload).map_err(|e| EventDecodeError::Malformed {
        event_type: event_type.to_owned(),
        reason: e.to_string(),
    })
}

/// As [`from_stored_v1`], from the payload's stored JSON text: read in one pass, without
/// building the payload as a [`Value`] first (for folding long streams).
pub fn from_stored_json_v1<E: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &str,
) -> Result<E, EventDecodeError> {
    if schema_version != 1 {
        return Err(EventDecodeError::UnknownVersion {
            event_type: event_type.to_owned(),
            schema_version,
        });
    }
    let malformed = |reason: String| EventDecodeError::Malformed {
        event_type: event_type.to_owned(),
        reason,
    };
    let tag = serde_json::to_string(event_type).map_err(|e| malformed(e.to_string()))?;
    // The tag first, so serde reads the adjacently tagged form straight through.
    serde_json::from_str(&format!("{{\"type\":{tag},\"data\":{payload}}}"))
        .map_err(|e| malformed(e.to_string()))
}
