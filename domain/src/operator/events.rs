//! What happens to an operator, in the past tense. No password, hash, code or secret: the
//! enrollment id names the sealed secret in the vault, a setup id names the link (whose token is
//! derived from it with a server key, never stored).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{OperatorRole, Username};
use crate::code::ApprovalNumber;
use crate::ids::EnrollmentId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInFailure {
    WrongPassword,
    WrongCode,
    /// The code of a step already used (RFC 6238 section 5.2).
    ReplayedCode,
    /// The operator's device answered "no": someone else knows the password.
    DeniedOnDevice,
    /// The device sent a number other than the one the sign-in page shows.
    WrongNumber,
}

impl SignInFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInFailure::WrongPassword => "wrong_password",
            SignInFailure::WrongCode => "wrong_code",
            SignInFailure::ReplayedCode => "replayed_code",
            SignInFailure::DeniedOnDevice => "denied_on_device",
            SignInFailure::WrongNumber => "wrong_number",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OperatorEvent {
    OperatorCreated {
        username: Username,
        name: String,
        email: String,
        role: OperatorRole,
        setup_id: Uuid,
        setup_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The operator chose a password on the setup link (its hash is kept beside the log).
    OperatorPasswordSet {
        at: DateTime<Utc>,
    },
    /// A QR code was drawn for the operator's authenticator; its secret is sealed in the vault.
    OperatorEnrollmentStarted {
        enrollment_id: EnrollmentId,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    OperatorTotpActivated {
        enrollment_id: EnrollmentId,
        step: u64,
        at: DateTime<Utc>,
    },
    OperatorSignedIn {
        step: u64,
        /// The sign-in approved on the operator's device this completes; none for a typed code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sign_in_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// A push-capable authenticator activated the operator's TOTP through the device API: it
    /// holds the secret and a device token (only the token's SHA-256 is kept), and approves
    /// sign-ins from here on. Recorded right after `OperatorTotpActivated`.
    OperatorDeviceBound {
        device_id: Uuid,
        label: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        device_token_sha256: String,
        at: DateTime<Utc>,
    },
    /// The password matched and the operator's device was asked to approve; the page shows
    /// `number`. `browser_sha256` is the SHA-256 of a secret only the waiting browser holds, so
    /// only it can turn the approval into a session.
    OperatorSignInStarted {
        sign_in_id: Uuid,
        number: ApprovalNumber,
        browser_sha256: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Approved on the device with a fresh code and the number shown.
    OperatorSignInApproved {
        sign_in_id: Uuid,
        step: u64,
        at: DateTime<Utc>,
    },
    /// Refused on the device; recorded with an `OperatorSignInFailed` that counts toward the lock.
    OperatorSignInDenied {
        sign_in_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Nobody answered within the login time.
    OperatorSignInExpired {
        sign_in_id: Uuid,
        at: DateTime<Utc>,
    },
    OperatorSignInFailed {
        reason: SignInFailure,
        failed_attempts: u32,
        at: DateTime<Utc>,
    },
    OperatorLocked {
        until: DateTime<Utc>,
        lock_number: u32,
        at: DateTime<Utc>,
    },
    OperatorSignedOut {
        at: DateTime<Utc>,
    },
    /// The operator may no longer sign in; open sessions end at their next request.
    OperatorDisabled {
        at: DateTime<Utc>,
    },
    /// The operator's TOTP device was removed; a new setup link activates another.
    OperatorTotpReset {
        enrollment_id: Option<EnrollmentId>,
        setup_id: Uuid,
        setup_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl OperatorEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OperatorEvent::OperatorCreated { .. } => "OperatorCreated",
            OperatorEvent::OperatorPasswordSet { .. } => "OperatorPasswordSet",
            OperatorEvent::OperatorEnrollmentStarted { .. } => "OperatorEnrollmentStarted",
            OperatorEvent::OperatorTotpActivated { .. } => "OperatorTotpActivated",
            OperatorEvent::OperatorSignedIn { .. } => "OperatorSignedIn",
            OperatorEvent::OperatorSignInFailed { .. } => "OperatorSignInFailed",
            OperatorEvent::OperatorLocked { .. } => "OperatorLocked",
            OperatorEvent::OperatorSignedOut { .. } => "OperatorSignedOut",
            OperatorEvent::OperatorDisabled { .. } => "OperatorDisabled",
            OperatorEvent::OperatorTotpReset { .. } => "OperatorTotpReset",
            OperatorEvent::OperatorDeviceBound { .. } => "OperatorDeviceBound",
            OperatorEvent::OperatorSignInStarted { .. } => "OperatorSignInStarted",
            OperatorEvent::OperatorSignInApproved { .. } => "OperatorSignInApproved",
            OperatorEvent::OperatorSignInDenied { .. } => "OperatorSignInDenied",
            OperatorEvent::OperatorSignInExpired { .. } => "OperatorSignInExpired",
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
