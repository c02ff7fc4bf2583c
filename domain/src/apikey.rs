//! API keys: who may call the service, and as what. A key is shown once at creation; its stream
//! records the SHA-256 digest and the role, so the key table can be rebuilt from the log.
//!
//! A key has a lifecycle (issue 13): it may be created with an expiry, and it may be revoked.
//! [`decide`] says whether a revocation may happen on the key's history, and [`check`] whether a
//! key still authorises a call at an instant; both are pure.

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
        /// When the key stops working; `None` (and every key created before expiry existed)
        /// never expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// The key authorises nothing from `at` on. Who revoked it is in the event's metadata.
    ApiKeyRevoked { key_id: Uuid, at: DateTime<Utc> },
}

impl ApiKeyEvent {
    pub const STREAM_PREFIX: &'static str = "apikey-";

    pub fn stream_name(key_id: Uuid) -> String {
        format!("{}{key_id}", Self::STREAM_PREFIX)
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            ApiKeyEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            ApiKeyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
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

/// The longest lifetime `--expires-in-days` (and the console) may give a key: ten years, far
/// beyond any rotation policy, and well inside what the clock arithmetic holds.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("no API key has this id")]
    Unknown,
    #[error("this API key was already revoked at {0}")]
    AlreadyRevoked(DateTime<Utc>),
    #[error("an API key expires after 1 to {MAX_EXPIRES_IN_DAYS} days")]
    ExpiryOutOfRange,
}

/// The instant a key made at `now` to last `days` days expires, if `days` is within bounds.
pub fn expiry(now: DateTime<Utc>, days: u32) -> Result<DateTime<Utc>, ApiKeyError> {
    if !(1..=MAX_EXPIRES_IN_DAYS).contains(&days) {
        return Err(ApiKeyError::ExpiryOutOfRange);
    }
    now.checked_add_signed(chrono::Duration::days(i64::from(days)))
        .ok_or(ApiKeyError::ExpiryOutOfRange)
}

/// A key as its stream tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ApiKey {
    /// No event yet: there is no such key.
    #[default]
    Unknown,
    Active {
        key_id: Uuid,
        expires_at: Option<DateTime<Utc>>,
    },
    Revoked {
        key_id: Uuid,
        at: DateTime<Utc>,
    },
}

impl ApiKey {
    pub fn apply(&mut self, event: &ApiKeyEvent) {
        *self = match event {
            ApiKeyEvent::ApiKeyCreated {
                key_id, expires_at, ..
            } => ApiKey::Active {
                key_id: *key_id,
                expires_at: *expires_at,
            },
            ApiKeyEvent::ApiKeyRevoked { key_id, at } => ApiKey::Revoked {
                key_id: *key_id,
                at: *at,
            },
        };
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ApiKeyEvent>) -> Self {
        let mut key = ApiKey::default();
        for event in events {
            key.apply(event);
        }
        key
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    Revoke,
}

/// What `command` records on `key` at `now`, or why it is refused. An expired key may still be
/// revoked: revocation is what makes it certain the key never works again, whatever the clock.
pub fn decide(
    key: &ApiKey,
    command: &ApiKeyCommand,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
    match (key, command) {
        (ApiKey::Unknown, ApiKeyCommand::Revoke) => Err(ApiKeyError::Unknown),
        (ApiKey::Revoked { at, .. }, ApiKeyCommand::Revoke) => {
            Err(ApiKeyError::AlreadyRevoked(*at))
        }
        (ApiKey::Active { key_id, .. }, ApiKeyCommand::Revoke) => {
            Ok(vec![ApiKeyEvent::ApiKeyRevoked {
                key_id: *key_id,
                at: now,
            }])
        }
    }
}

/// Why a known key no longer authorises a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("this API key was revoked")]
    Revoked,
    #[error("this API key has expired")]
    Expired,
}

/// Whether a key with this expiry and revocation authorises a call at `now`. A key expires at
/// its `expires_at` exactly.
pub fn check(
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), KeyRefusal> {
    if revoked_at.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    match expires_at {
        Some(expires_at) if now >= expires_at => Err(KeyRefusal::Expired),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 10)
            .single()
            .unwrap_or_default()
    }

    fn created(expires_at: Option<DateTime<Utc>>) -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyCreated {
            key_id: Uuid::from_u128(7),
            name: "portal-prod".to_owned(),
            role: Role::Portal,
            key_sha256: "ab".repeat(32),
            at: t0(),
            expires_at,
        }
    }

    #[test]
    fn an_active_key_is_revoked_at_the_instant_given() {
        let key = ApiKey::from_events(&[created(None)]);
        let later = t0() + Duration::hours(1);
        assert_eq!(
            decide(&key, &ApiKeyCommand::Revoke, later),
            Ok(vec![ApiKeyEvent::ApiKeyRevoked {
                key_id: Uuid::from_u128(7),
                at: later
            }])
        );
    }

    #[test]
    fn an_expired_key_can_still_be_revoked() {
        let key = ApiKey::from_events(&[created(Some(t0() + Duration::days(1)))]);
        let events = decide(&key, &ApiKeyCommand::Revoke, t0() + Duration::days(30));
        assert!(matches!(
            events.as_deref(),
            Ok([ApiKeyEvent::ApiKeyRevoked { .. }])
        ));
    }

    #[test]
    fn revoking_an_unknown_key_is_refused() {
        assert_eq!(
            decide(&ApiKey::Unknown, &ApiKeyCommand::Revoke, t0()),
            Err(ApiKeyError::Unknown)
        );
    }

    #[test]
    fn revoking_a_revoked_key_is_refused_naming_when() {
        let revoked_at = t0() + Duration::minutes(5);
        let key = ApiKey::from_events(&[
            created(None),
            ApiKeyEvent::ApiKeyRevoked {
                key_id: Uuid::from_u128(7),
                at: revoked_at,
            },
        ]);
        assert_eq!(
            decide(&key, &ApiKeyCommand::Revoke, t0() + Duration::hours(1)),
            Err(ApiKeyError::AlreadyRevoked(revoked_at))
        );
    }

    #[test]
    fn a_key_works_until_its_expiry_and_never_after_revocation() {
        let expires = t0() + Duration::days(1);
        assert_eq!(check(None, None, t0()), Ok(()));
        assert_eq!(
            check(Some(expires), None, expires - Duration::seconds(1)),
            Ok(())
        );
        assert_eq!(
            check(Some(expires), None, expires),
            Err(KeyRefusal::Expired)
        );
        assert_eq!(check(None, Some(t0()), t0()), Err(KeyRefusal::Revoked));
        assert_eq!(
            check(Some(expires), Some(t0()), t0()),
            Err(KeyRefusal::Revoked)
        );
    }

    #[test]
    fn the_expiry_is_bounded() {
        assert_eq!(expiry(t0(), 0), Err(ApiKeyError::ExpiryOutOfRange));
        assert_eq!(
            expiry(t0(), MAX_EXPIRES_IN_DAYS + 1),
            Err(ApiKeyError::ExpiryOutOfRange)
        );
        assert_eq!(expiry(t0(), 1), Ok(t0() + Duration::days(1)));
        assert_eq!(
            expiry(t0(), MAX_EXPIRES_IN_DAYS),
            Ok(t0() + Duration::days(i64::from(MAX_EXPIRES_IN_DAYS)))
        );
    }

    #[test]
    fn a_created_event_from_before_expiry_existed_still_reads() {
        let old = serde_json::json!({
            "key_id": Uuid::from_u128(7),
            "name": "portal-prod",
            "role": "portal",
            "key_sha256": "ab".repeat(32),
            "at": t0(),
        });
        assert_eq!(
            ApiKeyEvent::from_stored("ApiKeyCreated", old).ok(),
            Some(created(None))
        );
        let revoked = ApiKeyEvent::ApiKeyRevoked {
            key_id: Uuid::from_u128(7),
            at: t0(),
        };
        assert_eq!(
            ApiKeyEvent::from_stored("ApiKeyRevoked", revoked.to_payload()).ok(),
            Some(revoked)
        );
    }
}
