//! An operator folded from its stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::OperatorEvent;
use super::{OperatorRole, Username};
use crate::account::Lockout;
use crate::code::ApprovalNumber;
use crate::ids::EnrollmentId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorStatus {
    /// No stream yet.
    #[default]
    Absent,
    /// Created; waits for its password and TOTP on the setup link.
    Pending,
    Active,
    Disabled,
}

impl OperatorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorStatus::Absent => "absent",
            OperatorStatus::Pending => "pending",
            OperatorStatus::Active => "active",
            OperatorStatus::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupLink {
    pub setup_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub enrollment_id: EnrollmentId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    pub username: Option<Username>,
    pub name: String,
    pub email: String,
    pub role: Option<OperatorRole>,
    pub status: OperatorStatus,
    /// The one setup link that works, until it is used up (TOTP activated) or replaced.
    pub setup: Option<SetupLink>,
    pub password_set: bool,
    pub pending_enrollment: Option<PendingEnrollment>,
    /// The enrollment whose sealed secret checks sign-in codes.
    pub enrollment_id: Option<EnrollmentId>,
    pub last_accepted_step: Option<u64>,
    pub lockout: Lockout,
    /// The push-capable device bound through the device API, if any.
    #[serde(default)]
    pub device: Option<OperatorDevice>,
    /// The one sign-in waiting for (or approved on) the device; a new one replaces it.
    #[serde(default)]
    pub sign_in: Option<DeviceSignIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorDevice {
    pub device_id: Uuid,
    pub label: String,
    pub token_sha256: String,
    pub bound_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSignIn {
    pub sign_in_id: Uuid,
    pub number: ApprovalNumber,
    pub browser_sha256: String,
    pub expires_at: DateTime<Utc>,
    /// The step of the device's code once approved; the browser has not picked it up yet.
    pub approved_step: Option<u64>,
}

impl Operator {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a OperatorEvent>) -> Self {
        events.into_iter().fold(Operator::default(), |mut op, e| {
            op.apply(e);
            op
        })
    }

    /// The setup link `setup_id`, if it still works at `now`.
    pub fn setup_link(&self, setup_id: Uuid) -> Option<&SetupLink> {
        self.setup.as_ref().filter(|s| s.setup_id == setup_id)
    }

    pub fn apply(&mut self, event: &OperatorEvent) {
        match event {
            OperatorEvent::OperatorCreated {
                username,
                name,
                email,
                role,
                setup_id,
                setup_expires_at,
                ..
            } => {
                self.username = Some(username.clone());
                self.name = name.clone();
                self.email = email.clone();
                self.role = Some(*role);
                self.status = OperatorStatus::Pending;
                self.setup = Some(SetupLink {
                    setup_id: *setup_id,
                    expires_at: *setup_expires_at,
                });
            }
            OperatorEvent::OperatorPasswordSet { .. } => self.password_set = true,
            OperatorEvent::OperatorEnrollmentStarted {
                enrollment_id,
                expires_at,
                ..
            } => {
                self.pending_enrollment = Some(PendingEnrollment {
                    enrollment_id: *enrollment_id,
                    expires_at: *expires_at,
                });
            }
            OperatorEvent::OperatorTotpActivated {
                enrollment_id,
                step,
                ..
            } => {
                self.enrollment_id = Some(*enrollment_id);
                self.pending_enrollment = None;
                self.last_accepted_step = Some(*step);
                self.setup = None;
                if self.status == OperatorStatus::Pending {
                    self.status = OperatorStatus::Active;
                }
            }
            OperatorEvent::OperatorSignedIn { step, .. } => {
                self.last_accepted_step = Some(*step);
                self.lockout = Lockout::default();
                self.sign_in = None;
            }
            OperatorEvent::OperatorSignInFailed {
                failed_attempts, ..
            } => self.lockout.failed_attempts = *failed_attempts,
            OperatorEvent::OperatorDeviceBound {
                device_id,
                label,
                device_token_sha256,
                at,
                ..
            } => {
                self.device = Some(OperatorDevice {
                    device_id: *device_id,
                    label: label.clone(),
                    token_sha256: device_token_sha256.clone(),
                    bound_at: *at,
                });
            }
            OperatorEvent::OperatorSignInStarted {
                sign_in_id,
                number,
                browser_sha256,
                expires_at,
                ..
            } => {
                self.sign_in = Some(DeviceSignIn {
                    sign_in_id: *sign_in_id,
                    number: *number,
                    browser_sha256: browser_sha256.clone(),
                    expires_at: *expires_at,
                    approved_step: None,
                });
            }
            OperatorEvent::OperatorSignInApproved { step, .. } => {
                // The code is used from here on, whether or not the browser comes for it.
                self.last_accepted_step = Some(*step);
                if let Some(sign_in) = self.sign_in.as_mut() {
                    sign_in.approved_step = Some(*step);
                }
            }
            OperatorEvent::OperatorSignInDenied { .. }
            | OperatorEvent::OperatorSignInExpired { .. } => {
                self.sign_in = None;
            }
            OperatorEvent::OperatorLocked {
                until, lock_number, ..
            } => {
                self.lockout.failed_attempts = 0;
                self.lockout.locks_in_a_row = *lock_number;
                self.lockout.locked_until = Some(*until);
            }
            OperatorEvent::OperatorSignedOut { .. } => {}
            OperatorEvent::OperatorDisabled { .. } => {
                self.status = OperatorStatus::Disabled;
                self.setup = None;
                self.pending_enrollment = None;
                self.sign_in = None;
            }
            OperatorEvent::OperatorTotpReset {
                setup_id,
                setup_expires_at,
                ..
            } => {
                self.enrollment_id = None;
                self.pending_enrollment = None;
                self.last_accepted_step = None;
                self.device = None;
                self.sign_in = None;
                self.lockout = Lockout::default();
                self.setup = Some(SetupLink {
                    setup_id: *setup_id,
                    expires_at: *setup_expires_at,
                });
                if self.status == OperatorStatus::Active {
                    self.status = OperatorStatus::Pending;
                }
            }
        }
    }
}
