//! Reset requests that concern no account's stream: a User ID nobody has, or a client address
//! over its hourly share. They are still facts the helpdesk may need (someone probing User IDs,
//! a flood from one address), so they go to one shared stream of their own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::account::EventDecodeError;
use crate::ids::{UserId, UserType};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ResetLogEvent {
    /// A reset was asked for an account that does not exist. The typed email is not kept: it
    /// belongs to nobody the service knows.
    ResetRequestUnmatched {
        user_type: UserType,
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ip: Option<String>,
        at: DateTime<Utc>,
    },
    /// The client address had more requests this hour than allowed; nothing else was done.
    ResetRequestThrottled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ip: Option<String>,
        limit: u32,
        at: DateTime<Utc>,
    },
}

impl ResetLogEvent {
    pub const STREAM: &'static str = "reset-requests";

    pub fn event_type(&self) -> &'static str {
        match self {
            ResetLogEvent::ResetRequestUnmatched { .. } => "ResetRequestUnmatched",
            ResetLogEvent::ResetRequestThrottled { .. } => "ResetRequestThrottled",
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
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        crate::stored::from_stored_v1(event_type, schema_version, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_stored_form() {
        let event = ResetLogEvent::ResetRequestUnmatched {
            user_type: UserType::Penyedia,
            user_id: UserId::parse("nobody").unwrap(),
            client_ip: Some("10.0.0.9".to_owned()),
            at: Utc::now(),
        };
        let back = ResetLogEvent::from_stored(event.event_type(), 1, event.to_payload()).unwrap();
        assert_eq!(back, event);
    }
}
