//! The facts of an account's TOTP life. Past tense, versioned, and free of secrets: a sealed
//! secret is named by its enrollment id, a device token only by its SHA-256 digest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::code::ApprovalNumber;
use crate::ids::{DeviceId, EnrollmentId, LoginId, ResetRequestId, UserId, UserType};

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
    /// TOTP was reset while it waited: nothing the old device approves may count.
    Reset,
}

/// Who reset TOTP, and on what grounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResetBy {
    /// The user, through the emailed link of this request (flow 3).
    Link { request_id: ResetRequestId },
    /// A helpdesk operator (named in the event's metadata) on the user's written request (FAQ 5).
    Helpdesk { reason: String, ticket: String },
}

/// Why a reset request sent no email. The portal's answer is the same either way; only the
/// account's own history says which it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// The email given is not the one on record.
    EmailMismatch,
    /// TOTP is neither active nor waiting for activation.
    NothingToReset,
    /// The account already had its hourly share of reset emails.
    TooManyRequests,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::EmailMismatch => "email_mismatch",
            DeclineReason::NothingToReset => "nothing_to_reset",
            DeclineReason::TooManyRequests => "too_many_requests",
        }
    }
}

/// The security notices mailed to the account's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// After every reset, by link or by the helpdesk.
    Reset,
    /// After every activation on a device.
    Activated,
    /// After the user turned TOTP off (FAQ 4).
    Disabled,
    /// After each lock: someone may be guessing codes.
    Locked,
    /// After a helpdesk operator lifted a lock.
    Unlocked,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Reset => "reset",
            NoticeKind::Activated => "activated",
            NoticeKind::Disabled => "disabled",
            NoticeKind::Locked => "locked",
            NoticeKind::Unlocked => "unlocked",
        }
    }
}

/// What happened when the mailer tried to deliver a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MailOutcome {
    /// The mail server (or the outbox) accepted it.
    Sent { message_id: String },
    /// Not delivered on this attempt; tried again at `retry_at`, or never when it is absent.
    Failed {
        attempt: u32,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
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
    /// Too many failures in a row: no code is checked until `until`, or, with `until_unlock`,
    /// until a helpdesk unlock (`until` is then the end the lock would have had).
    AccountLocked {
        until: DateTime<Utc>,
        /// 1 for the first lock since the last success, 2 for the next (twice as long), ...
        lock_number: u32,
        /// The policy's last lock in a row was reached: guessing stops here for good, since a
        /// lock that always ends lets an attacker go on for ever at a few codes per lock.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        until_unlock: bool,
        at: DateTime<Utc>,
    },
    /// The user turned TOTP off after a fresh approval (FAQ 4); the sealed secret is destroyed.
    TotpDisabled {
        enrollment_id: EnrollmentId,
        login_id: LoginId,
        at: DateTime<Utc>,
    },
    /// A helpdesk operator lifted a lock and cleared the failure count.
    AccountUnlocked { reason: String, at: DateTime<Utc> },
    /// A reset link goes to `email`. The token in it is derived from `request_id` with a server
    /// key, so the link can be rebuilt by the mailer but is never stored.
    ResetRequested {
        request_id: ResetRequestId,
        email: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ip: Option<String>,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A reset request for this account that sends nothing (see [`DeclineReason`]).
    ResetRequestDeclined {
        reason: DeclineReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ip: Option<String>,
        at: DateTime<Utc>,
    },
    ResetEmailSent {
        request_id: ResetRequestId,
        message_id: String,
        at: DateTime<Utc>,
    },
    ResetEmailFailed {
        request_id: ResetRequestId,
        attempt: u32,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The binding is gone and the sealed secrets destroyed: the next login asks for activation.
    TotpReset {
        by: ResetBy,
        /// The bound device's enrollment, whose secret is destroyed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enrollment_id: Option<EnrollmentId>,
        /// A QR code waiting to be scanned, destroyed too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending_enrollment_id: Option<EnrollmentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_label: Option<String>,
        at: DateTime<Utc>,
    },
    /// A security notice about the event `cause_event_id` reached the mail server.
    NoticeEmailSent {
        notice: NoticeKind,
        cause_event_id: uuid::Uuid,
        message_id: String,
        at: DateTime<Utc>,
    },
    NoticeEmailFailed {
        notice: NoticeKind,
        cause_event_id: uuid::Uuid,
        attempt: u32,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
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
            AccountEvent::AccountUnlocked { .. } => "AccountUnlocked",
            AccountEvent::ResetRequested { .. } => "ResetRequested",
            AccountEvent::ResetRequestDeclined { .. } => "ResetRequestDeclined",
            AccountEvent::ResetEmailSent { .. } => "ResetEmailSent",
            AccountEvent::ResetEmailFailed { .. } => "ResetEmailFailed",
            AccountEvent::TotpReset { .. } => "TotpReset",
            AccountEvent::NoticeEmailSent { .. } => "NoticeEmailSent",
            AccountEvent::NoticeEmailFailed { .. } => "NoticeEmailFailed",
        }
    }

    /// Every v1 event is at schema version 1. A later change to a payload bumps its version and
    /// adds an upcaster in [`AccountEvent::from_stored`], so old streams still fold.
    pub fn schema_version(&self) -> u32 {
        1
    }

    /// The payload as stored: the event's fields without the type tag.
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

    /// As [`AccountEvent::from_stored`], from the payload's JSON text as stored.
    pub fn from_stored_json(
        event_type: &str,
        schema_version: u32,
        payload: &str,
    ) -> Result<Self, EventDecodeError> {
        crate::stored::from_stored_json_v1(event_type, schema_version, payload)
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
        let back = AccountEvent::from_stored(event.event_type(), 1, payload.clone()).unwrap();
        assert_eq!(back, event);
        let text = payload.to_string();
        let from_text = AccountEvent::from_stored_json(event.event_type(), 1, &text).unwrap();
        assert_eq!(from_text, event);
    }

    #[test]
    fn stored_text_cannot_smuggle_another_type_or_payload() {
        // The text is spliced after the tag: a payload that closes itself early and names
        // another type or a second payload is refused, not read as that other event.
        for text in [
            r#"{"at":"2026-01-01T00:00:00Z"},"type":"TotpDisabled","data":{"at":"2026-01-01T00:00:00Z"}"#,
            r#"{},"data":{"at":"2026-01-01T00:00:00Z"}"#,
            "not json",
            "",
        ] {
            let err = AccountEvent::from_stored_json("LoginExpired", 1, text).unwrap_err();
            assert!(matches!(err, EventDecodeError::Malformed { .. }), "{text}");
        }
        let err = AccountEvent::from_stored_json("LoginExpired", 9, "{}").unwrap_err();
        assert!(matches!(err, EventDecodeError::UnknownVersion { .. }));
    }

    #[test]
    fn unknown_versions_are_refused_not_guessed() {
        let err = AccountEvent::from_stored("LoginExpired", 9, serde_json::json!({})).unwrap_err();
        assert!(matches!(err, EventDecodeError::UnknownVersion { .. }));
    }
}
