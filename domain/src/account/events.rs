//! The facts of an account's TOTP life. Past tense, versioned, and free of secrets: a sealed
//! secret is named by its enrollment id, a device token only by its SHA-256 digest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::code::ApprovalNumber;
use crate::ids::{DeviceId, EnrollmentId, LoginId, UserId, UserType};

/// What a login waits for: the first scan of a QR code, or approval from the bound device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStage {
    Activation,
    Approval,
}

/// How a login was approved or an enrollment activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A code typed into the portal, from any RFC 6238 app.
    Code,
    /// The push-capable app, calling the device endpoints.
    Device,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Code => "code",
            Method::Device => "device",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The portal gave up on the login (the user closed the page, logged in elsewhere, ...).
    Portal,
    /// A newer login took its place: a new QR code replaces the old, or too many were pending.
    Superseded,
    /// TOTP was disabled while it waited.
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The code matches no step in the window.
    WrongCode,
    /// The code's step was already used (RFC 6238 section 5.2).
    Replayed,
    /// The device picked another number than the portal showed.
    NumberMismatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AccountEvent {
    /// The portal first asked for this account.
    AccountRegistered {
        user_type: UserType,
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The portal sent a different email or name than the one on record.
    ProfileUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A QR code was handed out; its secret is sealed in the vault under `enrollment_id`.
    EnrollmentStarted {
        enrollment_id: EnrollmentId,
        login_id: LoginId,
        expires_at: DateTime<Utc>,
    },
    /// The enrollment's first valid code bound a device: the account's one active device.
    TotpActivated {
        enrollment_id: EnrollmentId,
        device_id: DeviceId,
        device_label: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        method: Method,
        /// The step of the code that proved possession; no code at or before it is accepted again.
        step: u64,
        /// SHA-256 of the device token issued to a push-capable app (never the token itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_token_sha256: Option<String>,
        at: DateTime<Utc>,
    },
    /// The portal checked the password and now waits for the second factor.
    LoginStarted {
        login_id: LoginId,
        stage: LoginStage,
        expires_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval_number: Option<ApprovalNumber>,
        /// The user's browser, as the portal relays it, shown on the device before approval.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ip: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        at: DateTime<Utc>,
    },
    LoginApproved {
        login_id: LoginId,
        method: Method,
        step: u64,
        at: DateTime<Utc>,
    },
    LoginDenied {
        login_id: LoginId,
        device_id: DeviceId,
        at: DateTime<Utc>,
    },
    LoginExpired {
        login_id: LoginId,
        at: DateTime<Utc>,
    },
    LoginCancelled {
        login_id: LoginId,
        reason: CancelReason,
        at: DateTime<Utc>,
    },
    /// A code or approval was refused; `failed_attempts` is the count after this failure.
    CodeRejected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_id: Option<LoginId>,
        method: Method,
        reason: RejectReason,
        failed_attempts: u32,
        at: DateTime<Utc>,
    },
    /// Too many failures in a row: no code is checked until `until`.
    AccountLocked {
        until: DateTime<Utc>,
        /// 1 for the first lock since the last success, 2 for the next (twice as long), ...
        lock_number: u32,
        at: DateTime<Utc>,
    },
    /// The user turned TOTP off after a fresh approval (FAQ 4); the sealed secret is destroyed.
    TotpDisabled {
        enrollment_id: EnrollmentId,
        login_id: LoginId,
        at: DateTime<Utc>,
    },
}

impl AccountEvent {
    /// The stored `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::AccountRegistered { .. } => "AccountRegistered",
            AccountEvent::ProfileUpdated { .. } => "ProfileUpdated",
            AccountEvent::EnrollmentStarted { .. } => "EnrollmentStarted",
            AccountEvent::TotpActivated { .. } => "TotpActivated",
            AccountEvent::LoginStarted { .. } => "LoginStarted",
            AccountEvent::LoginApproved { .. } => "LoginApproved",
            AccountEvent::LoginDenied { .. } => "LoginDenied",
            AccountEvent::LoginExpired { .. } => "LoginExpired",
            AccountEvent::LoginCancelled { .. } => "LoginCancelled",
            AccountEvent::CodeRejected { .. } => "CodeRejected",
            AccountEvent::AccountLocked { .. } => "AccountLocked",
            AccountEvent::TotpDisabled { .. } => "TotpDisabled",
        }
    }

    /// Every v1 event is at schema version 1. A later change to a payload bumps its version and
    /// adds an upcaster in [`AccountEvent::from_stored`], so old streams still fold.
    pub fn schema_version(&self) -> u32 {
        1
    }

    /// The payload as stored: the event's fields without the type tag.
    pub fn to_payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("data").unwrap_or(serde_json::Value::Null)
            }
            // Serialising a plain enum of plain fields cannot fail or change shape.
            _ => serde_json::Value::Null,
        }
    }

    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        if schema_version != 1 {
            return Err(EventDecodeError::UnknownVersion {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": payload })).map_err(
            |e| EventDecodeError::Malformed {
                event_type: event_type.to_owned(),
                reason: e.to_string(),
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventDecodeError {
    #[error("no upcaster for {event_type} at schema version {schema_version}")]
    UnknownVersion {
        event_type: String,
        schema_version: u32,
    },
    #[error("stored {event_type} does not decode: {reason}")]
    Malformed { event_type: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_their_stored_form() {
        let event = AccountEvent::LoginApproved {
            login_id: LoginId::generate(),
            method: Method::Device,
            step: 56_666_666,
            at: Utc::now(),
        };
        let payload = event.to_payload();
        assert!(
            payload.get("type").is_none(),
            "the tag is stored beside the payload"
        );
        let back = AccountEvent::from_stored(event.event_type(), 1, payload).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_versions_are_refused_not_guessed() {
        let err = AccountEvent::from_stored("LoginExpired", 9, serde_json::json!({})).unwrap_err();
        assert!(matches!(err, EventDecodeError::UnknownVersion { .. }));
    }
}
