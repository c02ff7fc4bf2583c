//! How an event row is stored, and how a payload is split into its keys and its values.
//!
//! On SQLite what recurs on many events is stored once, in the `terms` table (`id`, `term`), and
//! the `events` row holds the term's id, one to three bytes instead of the text again
//! (migrations/sqlite/20261207000010_event_row_terms.sql):
//!
//! | column | holds |
//! |---|---|
//! | `stream_id`, `type_id` | the term of the stream name, of the event type |
//! | `shape_id` | the term of the payload's keys, a JSON array (`["at","client_ip",...]`); NULL when the payload is stored as it is (not an object, or an empty one) |
//! | `payload` | with a shape, the JSON array of the top-level values in the keys' order (nested values as they are); without, the payload's JSON |
//! | `context_id` | the term of the metadata's head: the compact array ([`crate::stored_metadata`]) up to and including the user agent, the same for every event of a session; NULL when the metadata is stored whole (a legacy object) |
//! | `metadata` | with a context, the JSON array of the values after the head (correlation and causation ids, often `[]`); without, the metadata as before |
//!
//! The event id and hash are bytes, the instant microseconds, as before. The unique index on the
//! stream and version is two integers.
//!
//! Readers outside the store read the view `event_rows` (on both engines), which gives the old
//! columns their old texts plus `payload_keys` and `metadata_context`, the two terms decoding
//! needs; PostgreSQL stores every column as it was and its view has NULL for both. Decoding
//! ([`crate::StoredRow::decode`]) joins the parts again into exactly the `serde_json::Value` and
//! [`crate::EventMetadata`] that were written, so the hash chain, which covers the canonical
//! JSON of those values and never the stored text ([`crate::chain`]), is unchanged.

use serde_json::{Map, Value};

/// A payload as stored: the term of its keys (`None`: stored whole) and the row's text.
pub fn encode_payload(payload: &Value) -> (Option<String>, String) {
    match payload {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<&String> = map.keys().collect();
            let values: Vec<&Value> = map.values().collect();
            match (serde_json::to_string(&keys), serde_json::to_string(&values)) {
                (Ok(keys), Ok(values)) => (Some(keys), values),
                // Strings and values always serialise; should they not, the whole stays readable.
                _ => (None, payload.to_string()),
            }
        }
        _ => (None, payload.to_string()),
    }
}

/// The payload stored as `stored` with the keys term `keys` (`None`: stored whole). A shape
/// whose values do not match its keys one for one is refused, never guessed.
pub fn decode_payload(keys: Option<&str>, stored: &str) -> Result<Value, String> {
    let Some(keys) = keys else {
        return serde_json::from_str(stored).map_err(|e| e.to_string());
    };
    let keys: Vec<String> =
        serde_json::from_str(keys).map_err(|e| format!("the payload's keys do not read: {e}"))?;
    let values: Vec<Value> = serde_json::from_str(stored)
        .map_err(|e| format!("the payload's values are not a JSON array: {e}"))?;
    if keys.len() != values.len() {
        return Err(format!(
            "the payload has {} values for {} keys",
            values.len(),
            keys.len()
        ));
    }
    let count = keys.len();
    let map: Map<String, Value> = keys.into_iter().zip(values).collect();
    if map.len() != count {
        return Err("the payload's keys repeat".to_owned());
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_payload_reads_back_as_the_same_value() {
        for payload in [
            json!({"at": "2026-11-30T09:00:10Z", "login_id": "01a2", "stage": "activation"}),
            json!({"n": 1.5, "big": 12345678901234567890u64, "neg": -3, "t": true, "f": false,
                   "null": null, "nested": {"b": [1, {"c": "d"}], "a": "\"quoted\" é"}}),
            json!({"only": []}),
            json!({}),
            json!([1, 2]),
            json!("text"),
            json!(null),
        ] {
            let (keys, stored) = encode_payload(&payload);
            assert_eq!(
                decode_payload(keys.as_deref(), &stored).unwrap(),
                payload,
                "{keys:?} {stored}"
            );
        }
    }

    #[test]
    fn an_object_keeps_only_its_values_and_the_keys_go_to_the_term() {
        let (keys, stored) = encode_payload(&json!({"at": "x", "stage": "y"}));
        assert_eq!(keys.as_deref(), Some(r#"["at","stage"]"#));
        assert_eq!(stored, r#"["x","y"]"#);
        let (keys, stored) = encode_payload(&json!({}));
        assert_eq!((keys, stored.as_str()), (None, "{}"));
    }

    #[test]
    fn values_that_do_not_match_their_keys_are_refused() {
        assert!(decode_payload(Some(r#"["a","b"]"#), r#"[1]"#).is_err());
        assert!(decode_payload(Some(r#"["a"]"#), r#"[1,2]"#).is_err());
        assert!(decode_payload(Some(r#"["a","a"]"#), r#"[1,2]"#).is_err());
        assert!(decode_payload(Some(r#"["a"]"#), r#"{"a":1}"#).is_err());
        assert!(decode_payload(Some(r#"{"a":1}"#), r#"[1]"#).is_err());
    }
}
