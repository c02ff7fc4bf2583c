//! The record of who read what: every audit and helpdesk read appends one of these, naming the
//! reader (in the event's metadata), the subject, the endpoint and the stated purpose, never the
//! data that was read. They live outside the account streams, one stream per day, so that
//! readers never contend with the account's own writes nor with each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AccessEvent {
    AuditRecordRead {
        /// The account stream read, or `*` for a read across accounts (a search, a verification).
        subject: String,
        /// The endpoint or command, e.g. `GET /v1/audit/accounts/{user_type}/{user_id}/events`.
        endpoint: String,
        /// Why, as the reader stated it (a ticket number, an audit reference).
        purpose: String,
        /// For a search: the filters applied, so the record says what was looked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    /// The outcome of a verification of the log's hash chain run from the console, kept so the
    /// next auditor sees when it last ran, by whom (the metadata) and what it found.
    ChainVerified {
        ok: bool,
        /// Events checked (up to the broken one, if any).
        checked: u64,
        /// Events older than the chain (no hash): always 0 since such an event is a broken link.
        legacy: u64,
        streams: u64,
        /// The first broken link or signed checkpoint in words, when not `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broken: Option<String>,
        /// The position of the newest signed checkpoint that held; absent in verifications
        /// recorded before checkpoints existed, or when none had been signed yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<u64>,
    },
}

impl AccessEvent {
    pub const STREAM_PREFIX: &'static str = "access-";

    /// The day's stream of reads, e.g. `access-2026-11-30`.
    pub fn stream_name(at: DateTime<Utc>) -> String {
        format!("{}{}", Self::STREAM_PREFIX, at.format("%Y-%m-%d"))
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            AccessEvent::AuditRecordRead { .. } => "AuditRecordRead",
            AccessEvent::ChainVerified { .. } => "ChainVerified",
        }
    }

    pub fn schema_version(&self) -> u32 {
        1
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
    fn reads_round_trip_and_go_to_the_days_stream() {
        let read = AccessEvent::AuditRecordRead {
            subject: "account-penyedia-PPK1".to_owned(),
            endpoint: "GET /v1/audit/accounts/{user_type}/{user_id}/events".to_owned(),
            purpose: "ticket 42".to_owned(),
            query: None,
        };
        let back = AccessEvent::from_stored(read.event_type(), read.to_payload()).unwrap();
        assert_eq!(back, read);
        let at = crate::testing::t0();
        assert!(AccessEvent::stream_name(at).starts_with("access-20"));
        let verified = AccessEvent::ChainVerified {
            ok: false,
            checked: 7,
            legacy: 0,
            streams: 2,
            broken: Some("account-penyedia-PPK1 version 3".to_owned()),
            checkpoint: Some(6),
        };
        let back = AccessEvent::from_stored(verified.event_type(), verified.to_payload()).unwrap();
        assert_eq!(back, verified);
        // A verification recorded before checkpoints existed still reads.
        let older = serde_json::json!({"ok": true, "checked": 3, "legacy": 1, "streams": 1});
        assert!(matches!(
            AccessEvent::from_stored("ChainVerified", older),
            Ok(AccessEvent::ChainVerified {
                checkpoint: None,
                legacy: 1,
                ..
            })
        ));
    }
}
