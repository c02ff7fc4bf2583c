//! The hash chain that makes tampering with the log evident.
//!
//! Each event's hash is SHA-256 over the previous event's hash in the same stream and over
//! everything the event says: stream, version, event id, type, schema version, payload, metadata
//! and the instant it was recorded. Changing, inserting or removing any event of a stream (but
//! its last) breaks the link of the event after it; changing the last one breaks its own hash.
//! Every adapter calls [`event_hash`] with the values it stores, so SQLite, PostgreSQL or any
//! later engine chain identically and one verifier checks them all.
//!
//! JSON is hashed in a canonical form (object keys sorted, no insignificant whitespace), so an
//! engine that stores documents in its own layout (PostgreSQL's `jsonb` reorders keys) still
//! verifies. Each field is length-prefixed, so no two different events can share an input.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::NewEvent;

/// What the chain covers of one event.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub payload: &'a Value,
    /// The metadata as stored (a JSON object).
    pub metadata: &'a Value,
    pub recorded_at_micros: i64,
}

/// Versions the hash input's layout, so a later change of it can coexist with old chains.
const LAYOUT: &[u8] = b"spse-totp-chain-v1";

/// The hex SHA-256 of `event` chained to `previous` (the hash of the stream's previous event;
/// `None` for a stream's first event). The chain links hashes in this hex form; databases store
/// the 32 bytes ([`event_digest`]).
pub fn event_hash(previous: Option<&str>, event: &ChainedFields<'_>) -> String {
    hex::encode(event_digest(previous, event))
}

/// The SHA-256 of [`event_hash`], as bytes.
pub fn event_digest(previous: Option<&str>, event: &ChainedFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(LAYOUT);
    field(previous.unwrap_or("").as_bytes());
    field(event.stream.as_bytes());
    field(&event.version.to_be_bytes());
    field(event.event_id.as_bytes());
    field(event.event_type.as_bytes());
    field(&event.schema_version.to_be_bytes());
    field(canonical_json(event.payload).as_bytes());
    field(canonical_json(event.metadata).as_bytes());
    field(&event.recorded_at_micros.to_be_bytes());
    hasher.finalize().into()
}

/// A new event as an adapter stores it: its metadata in the stored form
/// ([`crate::stored_metadata`]), its instant in microseconds, and its link in the chain after
/// `previous` at `version` of `stream` (as hex, which the next link covers, and as the bytes
/// stored).
pub struct Chained {
    pub metadata: String,
    pub recorded_at_micros: i64,
    pub hash: String,
    pub digest: [u8; 32],
}

/// Chains `event`, about to be stored at `version` of `stream`, to `previous` (the hash of the
/// stream's last event; `None` for a new stream). Every adapter stores exactly what this returns.
pub fn chain_new_event(
    previous: Option<&str>,
    stream: &str,
    version: u64,
    event: &NewEvent,
) -> Result<Chained, serde_json::Error> {
    let metadata = serde_json::to_value(&event.metadata)?;
    let recorded_at_micros = event.recorded_at.timestamp_micros();
    let digest = event_digest(
        previous,
        &ChainedFields {
            stream,
            version,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            metadata: &metadata,
            recorded_at_micros,
        },
    );
    Ok(Chained {
        metadata: crate::stored_metadata::encode(&event.metadata),
        recorded_at_micros,
        hash: hex::encode(digest),
        digest,
    })
}

/// JSON with object keys in byte order at every depth and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields<'a>(payload: &'a Value, metadata: &'a Value) -> ChainedFields<'a> {
        ChainedFields {
            stream: "account-penyedia-ALICE",
            version: 2,
            event_id: Uuid::from_u128(7),
            event_type: "LoginStarted",
            schema_version: 1,
            payload,
            metadata,
            recorded_at_micros: 1_764_000_000_000_000,
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let meta = json!({"actor": {"kind": "system"}});
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"y": [1, 2], "x": "z"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"x":"z","y":[1,2]},"a":1}"#).unwrap();
        assert_eq!(
            event_hash(Some("p"), &fields(&a, &meta)),
            event_hash(Some("p"), &fields(&b, &meta))
        );
    }

    #[test]
    fn every_covered_field_changes_the_hash() {
        let payload = json!({"login_id": "x"});
        let meta = json!({"actor": {"kind": "system"}, "client_ip": "10.0.0.1"});
        let base = fields(&payload, &meta);
        let h = event_hash(Some("prev"), &base);
        assert_eq!(h.len(), 64);
        let other_payload = json!({"login_id": "y"});
        let other_meta = json!({"actor": {"kind": "system"}, "client_ip": "10.0.0.2"});
        let variants = [
            event_hash(None, &base),
            event_hash(Some("prev2"), &base),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    stream: "account-penyedia-BOB",
                    ..base
                },
            ),
            event_hash(Some("prev"), &ChainedFields { version: 3, ..base }),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    event_id: Uuid::from_u128(8),
                    ..base
                },
            ),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    event_type: "LoginExpired",
                    ..base
                },
            ),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    schema_version: 2,
                    ..base
                },
            ),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    payload: &other_payload,
                    ..base
                },
            ),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    metadata: &other_meta,
                    ..base
                },
            ),
            event_hash(
                Some("prev"),
                &ChainedFields {
                    recorded_at_micros: 1,
                    ..base
                },
            ),
        ];
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(variant, &h, "changing field {i} must change the hash");
        }
    }

    #[test]
    fn canonical_json_sorts_nested_keys_and_escapes_strings() {
        let v: Value =
            serde_json::from_str(r#"{"z": "a\"b", "a": [{"d": 1, "c": null}]}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":[{"c":null,"d":1}],"z":"a\"b"}"#);
    }
}
