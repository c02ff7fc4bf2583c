//! The master key's history: when a rotation to a new key began and when it finished. Events
//! name keys only by fingerprint (the first 8 bytes of the key's SHA-256, in hex), never the key.
//! They go to one stream of their own, so an auditor sees them beside everything else.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MasterKeyEvent {
    /// `spse-totp masterkey rotate` began re-sealing every secret under the key `to`.
    MasterKeyRotationStarted {
        from: String,
        to: String,
        at: DateTime<Utc>,
    },
    /// Every secret is sealed under `to` only; a process with the key `from` is refused.
    MasterKeyRotated {
        from: String,
        to: String,
        /// How many secrets the database held when it switched over.
        secrets: u64,
        at: DateTime<Utc>,
    },
}

impl MasterKeyEvent {
    pub const STREAM: &'static str = "masterkey";

    pub fn event_type(&self) -> &'static str {
        match self {
            MasterKeyEvent::MasterKeyRotationStarted { .. } => "MasterKeyRotationStarted",
            MasterKeyEvent::MasterKeyRotated { .. } => "MasterKeyRotated",
        }
    }

    pub fn to_payload(&self) -> serde_json::Value {
        crate::stored::payload_of(self)
    }

    pub fn from_stored(
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        crate::stored::from_payload(event_type, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_stored_form() {
        let event = MasterKeyEvent::MasterKeyRotated {
            from: "00112233aabbccdd".to_owned(),
            to: "8899aabbccddeeff".to_owned(),
            secrets: 3,
            at: Utc::now(),
        };
        let back = MasterKeyEvent::from_stored(event.event_type(), event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}
