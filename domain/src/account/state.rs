//! The account as folded from its events. It holds only what a decision needs, so it stays small
//! however long the history grows: decided logins beyond the last few are dropped.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{AccountEvent, CancelReason, LoginStage, Method, ResetBy};
use crate::code::ApprovalNumber;
use crate::ids::{DeviceId, EnrollmentId, LoginId, ResetRequestId, UserId, UserType};

/// Decided logins kept for answers like "already approved" and for the disable rule.
const DECIDED_LOGINS_KEPT: usize = 16;

/// Reset requests kept: enough to count an hour's worth against any sane hourly limit and to
/// tell "used" from "replaced" for recent links. Older links are simply unknown.
const RESET_REQUESTS_KEPT: usize = 32;

/// `inactive` (never activated, or reset), `active` or `disabled`, everywhere it appears.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotpStatus {
    #[default]
    Inactive,
    Active,
    Disabled,
}

impl TotpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TotpStatus::Inactive => "inactive",
            TotpStatus::Active => "active",
            TotpStatus::Disabled => "disabled",
        }
    }
}

/// A login's status as the portal polls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStatus {
    AwaitingActivation,
    AwaitingApproval,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl LoginStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginStatus::AwaitingActivation => "awaiting_activation",
            LoginStatus::AwaitingApproval => "awaiting_approval",
            LoginStatus::Approved => "approved",
            LoginStatus::Denied => "denied",
            LoginStatus::Expired => "expired",
            LoginStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_pending(self) -> bool {
        matches!(
            self,
            LoginStatus::AwaitingActivation | LoginStatus::AwaitingApproval
        )
    }

    pub fn pending_for(stage: LoginStage) -> Self {
        match stage {
            LoginStage::Activation => LoginStatus::AwaitingActivation,
            LoginStage::Approval => LoginStatus::AwaitingApproval,
        }
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_type: UserType,
    pub user_id: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundDevice {
    pub enrollment_id: EnrollmentId,
    pub device_id: DeviceId,
    pub label: String,
    pub platform: Option<String>,
    pub method: Method,
    pub activated_at: DateTime<Utc>,
    pub token_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub enrollment_id: EnrollmentId,
    pub login_id: LoginId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    pub login_id: LoginId,
    pub stage: LoginStage,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub approval_number: Option<ApprovalNumber>,
    pub status: LoginStatus,
    pub decided_at: Option<DateTime<Utc>>,
    pub method: Option<Method>,
}

impl Login {
    pub fn is_pending(&self) -> bool {
        self.status.is_pending()
    }

    /// Pending but past its time: it counts as expired before any event says so.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.is_pending() && self.expires_at <= now
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetStatus {
    /// The link works until it expires.
    Pending,
    Used,
    /// A newer request, an activation, a disable or another reset came first.
    Superseded,
}

impl ResetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetStatus::Pending => "pending",
            ResetStatus::Used => "used",
            ResetStatus::Superseded => "superseded",
        }
    }
}

/// One emailed reset link, as far as deciding needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetRequest {
    pub request_id: ResetRequestId,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: ResetStatus,
}

/// The consecutive-failure counter and its locks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lockout {
    pub failed_attempts: u32,
    /// Locks since the last success; the next lock lasts twice as long as the last.
    pub locks_in_a_row: u32,
    pub locked_until: Option<DateTime<Utc>>,
    /// Locked until a helpdesk unlock, whatever `locked_until` says. Defaulted so snapshots from
    /// before it still load.
    #[serde(default)]
    pub until_unlock: bool,
}

impl Lockout {
    /// The end of a lock that ends by itself, if it still holds at `now`; see `until_unlock` for
    /// the one that does not.
    pub fn locked_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.until_unlock || self.locked_at(now).is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub profile: Option<Profile>,
    pub totp_status: TotpStatus,
    pub device: Option<BoundDevice>,
    pub pending_enrollment: Option<PendingEnrollment>,
    /// The step of the last accepted code of the current secret (RFC 6238 section 5.2).
    pub last_accepted_step: Option<u64>,
    pub lockout: Lockout,
    /// Pending logins, then the most recent decided ones, in start order.
    pub logins: Vec<Login>,
    /// Recent reset requests, oldest first. Defaulted so snapshots from before resets still load.
    #[serde(default)]
    pub reset_requests: Vec<ResetRequest>,
}

impl Account {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Self {
        events
            .into_iter()
            .fold(Account::default(), |mut account, event| {
                account.apply(event);
                account
            })
    }

    pub fn login(&self, login_id: LoginId) -> Option<&Login> {
        self.logins.iter().find(|l| l.login_id == login_id)
    }

    fn login_mut(&mut self, login_id: LoginId) -> Option<&mut Login> {
        self.logins.iter_mut().find(|l| l.login_id == login_id)
    }

    pub fn reset_request(&self, request_id: ResetRequestId) -> Option<&ResetRequest> {
        self.reset_requests
            .iter()
            .find(|r| r.request_id == request_id)
    }

    /// Whether there is anything a reset would remove: an active device or a QR code in flight.
    pub fn has_totp_to_reset(&self, now: DateTime<Utc>) -> bool {
        self.totp_status == TotpStatus::Active
            || self
                .pending_enrollment
                .as_ref()
                .is_some_and(|e| e.expires_at > now)
    }

    fn supersede_pending_resets(&mut self) {
        for request in &mut self.reset_requests {
            if request.status == ResetStatus::Pending {
                request.status = ResetStatus::Superseded;
            }
        }
    }

    pub fn pending_logins(&self) -> impl Iterator<Item = &Login> {
        self.logins.iter().filter(|l| l.is_pending())
    }

    /// The state after one more event (`evolve`).
    pub fn evolve(mut self, event: &AccountEvent) -> Self {
        self.apply(event);
        self
    }

    pub fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountRegistered {
                user_type,
                user_id,
                email,
                name,
            } => {
                self.profile = Some(Profile {
                    user_type: *user_type,
                    user_id: user_id.clone(),
                    email: email.clone(),
                    name: name.clone(),
                });
            }
            AccountEvent::ProfileUpdated { email, name } => {
                if let Some(profile) = self.profile.as_mut() {
                    if email.is_some() {
                        profile.email = email.clone();
                    }
                    if name.is_some() {
                        profile.name = name.clone();
                    }
                }
            }
            AccountEvent::EnrollmentStarted {
                enrollment_id,
                login_id,
                expires_at,
            } => {
                self.pending_enrollment = Some(PendingEnrollment {
                    enrollment_id: *enrollment_id,
                    login_id: *login_id,
                    expires_at: *expires_at,
                });
            }
            AccountEvent::TotpActivated {
                enrollment_id,
                device_id,
                device_label,
                platform,
                method,
                step,
                device_token_sha256,
                at,
            } => {
                self.device = Some(BoundDevice {
                    enrollment_id: *enrollment_id,
                    device_id: *device_id,
                    label: device_label.clone(),
                    platform: platform.clone(),
                    method: *method,
                    activated_at: *at,
                    token_sha256: device_token_sha256.clone(),
                });
                self.totp_status = TotpStatus::Active;
                self.pending_enrollment = None;
                self.last_accepted_step = Some(*step);
                self.lockout = Lockout::default();
                self.supersede_pending_resets();
            }
            AccountEvent::LoginStarted {
                login_id,
                stage,
                expires_at,
                approval_number,
                at,
                ..
            } => {
                self.logins.push(Login {
                    login_id: *login_id,
                    stage: *stage,
                    started_at: *at,
                    expires_at: *expires_at,
                    approval_number: *approval_number,
                    status: LoginStatus::pending_for(*stage),
                    decided_at: None,
                    method: None,
                });
            }
            AccountEvent::LoginApproved {
                login_id,
                method,
                step,
                at,
            } => {
                self.decide_login(*login_id, LoginStatus::Approved, *at, Some(*method));
                self.last_accepted_step =
                    Some(self.last_accepted_step.map_or(*step, |s| s.max(*step)));
                self.lockout = Lockout::default();
            }
            AccountEvent::LoginDenied { login_id, at, .. } => {
                self.decide_login(*login_id, LoginStatus::Denied, *at, Some(Method::Device));
            }
            AccountEvent::LoginExpired { login_id, at } => {
                self.decide_login(*login_id, LoginStatus::Expired, *at, None);
            }
            AccountEvent::LoginCancelled { login_id, at, .. } => {
                self.decide_login(*login_id, LoginStatus::Cancelled, *at, None);
            }
            AccountEvent::CodeRejected {
                failed_attempts, ..
            } => {
                self.lockout.failed_attempts = *failed_attempts;
            }
            AccountEvent::AccountLocked {
                until,
                lock_number,
                until_unlock,
                ..
            } => {
                self.lockout = Lockout {
                    failed_attempts: 0,
                    locks_in_a_row: *lock_number,
                    locked_until: Some(*until),
                    until_unlock: *until_unlock,
                };
            }
            AccountEvent::TotpDisabled { .. } => {
                self.device = None;
                self.totp_status = TotpStatus::Disabled;
                self.last_accepted_step = None;
                self.supersede_pending_resets();
            }
            AccountEvent::AccountUnlocked { .. } => self.lockout = Lockout::default(),
            AccountEvent::ResetRequested {
                request_id,
                expires_at,
                at,
                ..
            } => {
                // Only the newest link works: an older email in the inbox is dead.
                self.supersede_pending_resets();
                self.reset_requests.push(ResetRequest {
                    request_id: *request_id,
                    requested_at: *at,
                    expires_at: *expires_at,
                    status: ResetStatus::Pending,
                });
                let excess = self
                    .reset_requests
                    .len()
                    .saturating_sub(RESET_REQUESTS_KEPT);
                self.reset_requests.drain(..excess);
            }
            AccountEvent::TotpReset { by, .. } => {
                self.supersede_pending_resets();
                if let ResetBy::Link { request_id } = by {
                    if let Some(request) = self
                        .reset_requests
                        .iter_mut()
                        .find(|r| r.request_id == *request_id)
                    {
                        request.status = ResetStatus::Used;
                    }
                }
                self.device = None;
                self.totp_status = TotpStatus::Inactive;
                self.pending_enrollment = None;
                self.last_accepted_step = None;
            }
            AccountEvent::ResetRequestDeclined { .. }
            | AccountEvent::ResetEmailSent { .. }
            | AccountEvent::ResetEmailFailed { .. }
            | AccountEvent::NoticeEmailSent { .. }
            | AccountEvent::NoticeEmailFailed { .. } => {}
        }
    }

    fn decide_login(
        &mut self,
        login_id: LoginId,
        status: LoginStatus,
        at: DateTime<Utc>,
        method: Option<Method>,
    ) {
        if let Some(login) = self.login_mut(login_id) {
            login.status = status;
            login.decided_at = Some(at);
            login.method = method;
        }
        // An activation QR lives and dies with the login that showed it.
        if self
            .pending_enrollment
            .as_ref()
            .is_some_and(|e| e.login_id == login_id && status != LoginStatus::Approved)
        {
            self.pending_enrollment = None;
        }
        self.forget_old_decided_logins();
    }

    fn forget_old_decided_logins(&mut self) {
        let decided = self.logins.iter().filter(|l| !l.is_pending()).count();
        let mut excess = decided.saturating_sub(DECIDED_LOGINS_KEPT);
        if excess > 0 {
            self.logins.retain(|l| {
                if excess > 0 && !l.is_pending() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

/// Why a pending login ended, for readers of [`CancelReason`] outside the domain.
pub fn cancel_reason_str(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Portal => "portal",
        CancelReason::Superseded => "superseded",
        CancelReason::Disabled => "disabled",
        CancelReason::Reset => "reset",
    }
}
