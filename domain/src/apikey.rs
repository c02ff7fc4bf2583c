//! API keys: who may call the service, and as what. A key is shown once at creation; its stream
//! records the SHA-256 digest and the role, so the key table can be rebuilt from the log.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The SPSE web application's server.
    Portal,
    /// Helpdesk staff, who name the operator on every call.
    Helpdesk,
    /// Auditors: read-only.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Portal => "portal",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role must be one of portal, helpdesk, auditor")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portal" => Ok(Role::Portal),
            "helpdesk" => Ok(Role::Helpdesk),
            "auditor" => Ok(Role::Auditor),
            _ => Err(UnknownRole),
        }
    }
}

/// So a stored role reads straight into a row struct.
impl TryFrom<String> for Role {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        key_id: Uuid,
        name: String,
        role: Role,
        key_sha256: String,
        at: DateTime<Utc>,
    },
}

impl ApiKeyEvent {
    pub const STREAM_PREFIX: &'static str = "apikey-";

    pub fn stream_name(key_id: Uuid) -> String {
        format!("{}{key_id}", Self::STREAM_PREFIX)
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            ApiKeyEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
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
