//! How an event's metadata is stored: a JSON array of the values alone, in a fixed order, instead
//! of an object that repeats every key on every event.
//!
//! `["portal", key_id, key_name, client_ip, user_agent, correlation_id, causation_id]`: the
//! actor's kind, then its fields in the order [`Actor`] declares them (the kind decides how many),
//! then the four optional fields, `null` where absent, trailing `null`s left out. It decodes to
//! exactly the [`EventMetadata`] that was encoded, and so to the same JSON object the hash chain
//! covers ([`crate::chain`] hashes `serde_json::to_value(&metadata)`, never the stored text).
//!
//! Two values are shortened, as they recur on nearly every event:
//! - the actor's ids (API key, device) are the 22-character base64url of their 16 bytes instead of
//!   the 36-character hyphenated form (which is still read);
//! - a causation id equal to the correlation id (every event a request appends directly) is the
//!   number `0` instead of the same text twice.
//!
//! Rows written before this encoding hold the JSON object itself; the lean-rows migration
//! converts every one that decodes to the same object and leaves any other as it was, so both
//! forms are read: an object is legacy, an array is compact.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use uuid::Uuid;

use crate::{Actor, EventMetadata};

/// Stored in the causation slot when the causation id is the correlation id.
const SAME_AS_CORRELATION: u64 = 0;

/// The stored text of `metadata`.
pub fn encode(metadata: &EventMetadata) -> String {
    Value::Array(compact_items(metadata).0).to_string()
}

/// The compact array split where the request's own ids begin (see [`crate::stored_row`]): the
/// head, the actor with its client address and user agent, recurs on every event of a session
/// and is stored once as a term; the rest (correlation and causation) stays in the row. Joined
/// again, the two are exactly the array [`encode`] writes.
pub fn encode_split(metadata: &EventMetadata) -> (String, String) {
    let (mut head, fixed) = compact_items(metadata);
    let rest = head.split_off(head.len().min(fixed + HEAD_OPTIONALS));
    (
        Value::Array(head).to_string(),
        Value::Array(rest).to_string(),
    )
}

/// How many of the optional values (client address, user agent) belong to the head.
const HEAD_OPTIONALS: usize = 2;

/// The compact array's values and how many of them are the actor's (its kind included).
fn compact_items(metadata: &EventMetadata) -> (Vec<Value>, usize) {
    let mut items: Vec<Value> = vec![Value::from(metadata.actor.kind())];
    match &metadata.actor {
        Actor::Portal { key_id, key_name } | Actor::Auditor { key_id, key_name } => {
            items.push(short_id(key_id));
            items.push(Value::from(key_name.as_str()));
        }
        Actor::Device { device_id } => items.push(short_id(device_id)),
        Actor::Helpdesk { operator, key_id } => {
            items.push(Value::from(operator.as_str()));
            items.push(short_id(key_id));
        }
        Actor::Operator { name } => items.push(Value::from(name.as_str())),
        Actor::Console { username, role } => {
            items.push(Value::from(username.as_str()));
            items.push(Value::from(role.as_str()));
        }
        Actor::System | Actor::User => {}
    }
    let fixed = items.len();
    for optional in [
        &metadata.client_ip,
        &metadata.user_agent,
        &metadata.correlation_id,
    ] {
        items.push(optional.as_deref().map_or(Value::Null, Value::from));
    }
    items.push(match &metadata.causation_id {
        Some(causation) if metadata.correlation_id.as_ref() == Some(causation) => {
            Value::from(SAME_AS_CORRELATION)
        }
        causation => causation.as_deref().map_or(Value::Null, Value::from),
    });
    while items.len() > fixed && items.last().is_some_and(Value::is_null) {
        items.pop();
    }
    (items, fixed)
}

fn short_id(id: &Uuid) -> Value {
    Value::from(URL_SAFE_NO_PAD.encode(id.as_bytes()))
}

/// An actor's id in either stored form: base64url of its bytes, or hyphenated text.
fn parse_id(text: &str) -> Result<Uuid, String> {
    if text.len() == 22 {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|e| e.to_string())?;
        return Uuid::from_slice(&bytes).map_err(|e| e.to_string());
    }
    Uuid::parse_str(text).map_err(|e| e.to_string())
}

/// The metadata stored as `text`, in either form.
pub fn decode(text: &str) -> Result<EventMetadata, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Array(items) => decode_compact(&items),
        legacy => serde_json::from_value(legacy).map_err(|e| e.to_string()),
    }
}

/// The JSON object the hash chain covers for the metadata stored as `text`. A legacy object is
/// taken exactly as stored, so a field added to it by hand still changes the hash where the
/// decoder would ignore it; a compact array must decode strictly (no extra values) first.
pub fn chained_value(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Array(items) => {
            serde_json::to_value(decode_compact(&items)?).map_err(|e| e.to_string())
        }
        legacy => Ok(legacy),
    }
}

/// The metadata stored as a head term (`None`: stored whole) and the row's `rest`.
pub fn decode_split(head: Option<&str>, rest: &str) -> Result<EventMetadata, String> {
    match head {
        None => decode(rest),
        Some(head) => decode_compact(&joined(head, rest)?),
    }
}

/// [`chained_value`] of the metadata stored as a head term and the row's `rest`: the joined array
/// must decode strictly.
pub fn chained_value_split(head: Option<&str>, rest: &str) -> Result<Value, String> {
    match head {
        None => chained_value(rest),
        Some(head) => {
            serde_json::to_value(decode_compact(&joined(head, rest)?)?).map_err(|e| e.to_string())
        }
    }
}

/// The compact array a head and a rest were split from; both must be arrays.
fn joined(head: &str, rest: &str) -> Result<Vec<Value>, String> {
    let array = |text: &str, what: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(format!("the stored metadata's {what} is not an array")),
        Err(e) => Err(format!("the stored metadata's {what} is not JSON: {e}")),
    };
    let mut items = array(head, "head")?;
    items.extend(array(rest, "rest")?);
    Ok(items)
}

fn decode_compact(items: &[Value]) -> Result<EventMetadata, String> {
    let mut values = items.iter();
    let mut text = |what: &str| -> Result<String, String> {
        match values.next() {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(format!("the stored metadata lacks the actor's {what}")),
        }
    };
    let uuid = |s: String| parse_id(&s);
    let actor = match text("kind")?.as_str() {
        "portal" => Actor::Portal {
            key_id: uuid(text("key id")?)?,
            key_name: text("key name")?,
        },
        "device" => Actor::Device {
            device_id: uuid(text("device id")?)?,
        },
        "helpdesk" => Actor::Helpdesk {
            operator: text("operator")?,
            key_id: uuid(text("key id")?)?,
        },
        "system" => Actor::System,
        "operator" => Actor::Operator {
            name: text("name")?,
        },
        "auditor" => Actor::Auditor {
            key_id: uuid(text("key id")?)?,
            key_name: text("key name")?,
        },
        "user" => Actor::User,
        "console" => Actor::Console {
            username: text("username")?,
            role: text("role")?,
        },
        other => {
            return Err(format!(
                "unknown actor kind {other:?} in the stored metadata"
            ))
        }
    };
    let mut optional = || -> Result<Option<String>, String> {
        match values.next() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("unexpected {other} in the stored metadata")),
        }
    };
    let client_ip = optional()?;
    let user_agent = optional()?;
    let correlation_id = optional()?;
    let causation_id = match values.next() {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.as_u64() == Some(SAME_AS_CORRELATION) => {
            match &correlation_id {
                Some(correlation) => Some(correlation.clone()),
                None => return Err("the causation refers to an absent correlation id".to_owned()),
            }
        }
        Some(other) => return Err(format!("unexpected {other} in the stored metadata")),
    };
    let metadata = EventMetadata {
        actor,
        client_ip,
        user_agent,
        correlation_id,
        causation_id,
    };
    if values.next().is_some() {
        return Err("the stored metadata has more values than it can hold".to_owned());
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_actor() -> Vec<Actor> {
        let id = Uuid::from_u128(0x0193_c000_0000_7000_8000_0000_0000_0001);
        vec![
            Actor::Portal {
                key_id: id,
                key_name: "spse-portal".into(),
            },
            Actor::Device { device_id: id },
            Actor::Helpdesk {
                operator: "Siti \"S\" Ñ".into(),
                key_id: id,
            },
            Actor::System,
            Actor::Operator {
                name: "root".into(),
            },
            Actor::Auditor {
                key_id: id,
                key_name: "siem".into(),
            },
            Actor::User,
            Actor::Console {
                username: "siti.helpdesk".into(),
                role: "helpdesk".into(),
            },
        ]
    }

    #[test]
    fn every_actor_and_option_round_trips_to_the_same_metadata_and_hashed_object() {
        let options = [None, Some(String::new()), Some("10.0.0.1".to_owned())];
        for actor in every_actor() {
            for (i, a) in options.iter().enumerate() {
                for b in &options {
                    let metadata = EventMetadata {
                        actor: actor.clone(),
                        client_ip: a.clone(),
                        user_agent: b.clone(),
                        correlation_id: options[(i + 1) % 3].clone(),
                        causation_id: b.clone(),
                    };
                    let stored = encode(&metadata);
                    assert!(stored.starts_with('['), "{stored}");
                    assert_eq!(decode(&stored).unwrap(), metadata, "{stored}");
                    assert_eq!(
                        chained_value(&stored).unwrap(),
                        serde_json::to_value(&metadata).unwrap()
                    );
                    // Split into the head term and the row's rest, it joins into the same.
                    let (head, rest) = encode_split(&metadata);
                    assert_eq!(
                        Value::Array(joined(&head, &rest).unwrap()),
                        serde_json::from_str::<Value>(&stored).unwrap()
                    );
                    assert_eq!(decode_split(Some(&head), &rest).unwrap(), metadata);
                    assert_eq!(
                        chained_value_split(Some(&head), &rest).unwrap(),
                        serde_json::to_value(&metadata).unwrap()
                    );
                    // The legacy form of the same metadata reads the same.
                    let legacy = serde_json::to_string(&metadata).unwrap();
                    assert_eq!(decode(&legacy).unwrap(), metadata);
                }
            }
        }
    }

    #[test]
    fn no_key_is_stored_and_trailing_absences_cost_nothing() {
        let stored = encode(&EventMetadata::system());
        assert_eq!(stored, r#"["system"]"#);
        let with_ip = EventMetadata {
            client_ip: Some("10.0.0.1".into()),
            ..EventMetadata::system()
        };
        assert_eq!(encode(&with_ip), r#"["system","10.0.0.1"]"#);
        assert_eq!(
            encode_split(&with_ip),
            (r#"["system","10.0.0.1"]"#.to_owned(), "[]".to_owned())
        );
    }

    #[test]
    fn the_head_holds_the_actor_address_and_agent_and_the_row_the_request_ids() {
        let metadata = EventMetadata {
            actor: Actor::Operator {
                name: "root".into(),
            },
            client_ip: None,
            user_agent: Some("Mozilla/5.0".into()),
            correlation_id: Some("c".into()),
            causation_id: Some("c".into()),
        };
        let (head, rest) = encode_split(&metadata);
        assert_eq!(head, r#"["operator","root",null,"Mozilla/5.0"]"#);
        assert_eq!(rest, r#"["c",0]"#);
        // A head or rest that is not an array, or values left over, is refused.
        assert!(decode_split(Some(r#"{"kind":"system"}"#), "[]").is_err());
        assert!(decode_split(Some(&head), r#"{"c":0}"#).is_err());
        assert!(chained_value_split(Some(&head), r#"["c",0,"extra"]"#).is_err());
        // Without a head the row holds the metadata whole, in either form.
        assert_eq!(decode_split(None, &encode(&metadata)).unwrap(), metadata);
    }

    #[test]
    fn a_request_appends_its_ids_once_and_the_actor_id_in_22_characters() {
        let key_id = Uuid::from_u128(0x0193_c000_0000_7000_8000_0000_0000_0001);
        let request = "5f0c8a8e-7d0e-4b1c-9d59-3f6c1c2a9e10".to_owned();
        let metadata = EventMetadata {
            actor: Actor::Portal {
                key_id,
                key_name: "spse-portal".into(),
            },
            client_ip: Some("10.0.0.1".into()),
            user_agent: None,
            correlation_id: Some(request.clone()),
            causation_id: Some(request.clone()),
        };
        let stored = encode(&metadata);
        assert_eq!(stored.matches(&request).count(), 1, "{stored}");
        assert!(!stored.contains(&key_id.to_string()), "{stored}");
        assert_eq!(decode(&stored).unwrap(), metadata);
        // The hyphenated id written before this encoding still reads.
        let older = format!(
            r#"["portal","{key_id}","spse-portal","10.0.0.1",null,"{request}","{request}"]"#
        );
        assert_eq!(decode(&older).unwrap(), metadata);
        // A causation that is not the correlation is kept as itself.
        let caused = EventMetadata {
            causation_id: Some("another".into()),
            ..metadata
        };
        assert_eq!(decode(&encode(&caused)).unwrap(), caused);
        // "The same as the correlation" without one is refused, not invented.
        assert!(decode(r#"["system",null,null,null,0]"#).is_err());
    }

    #[test]
    fn a_legacy_object_hashes_as_stored_and_a_tampered_array_is_refused() {
        let legacy = r#"{"actor":{"kind":"system"},"added":"by hand"}"#;
        assert_eq!(
            chained_value(legacy).unwrap(),
            serde_json::from_str::<Value>(legacy).unwrap()
        );
        assert!(chained_value(r#"["system",null,null,null,null,"extra"]"#).is_err());
        assert!(chained_value(r#"["portal","not-a-uuid","k"]"#).is_err());
        assert!(chained_value(r#"["system",5]"#).is_err());
        assert!(decode(r#"["nobody"]"#).is_err());
    }
}
