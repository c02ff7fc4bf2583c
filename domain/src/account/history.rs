//! An account's past, for auditors: its state as of any instant, folded with the same
//! [`Account::apply`] the write side decides on, plus the facts a decision no longer needs but an
//! auditor does (every device the account has ever had, and how each one ended).
//!
//! The caller feeds the stream's events recorded up to the instant in question, in order; the
//! fold never looks at a clock. Events this version cannot decode (written by a newer version)
//! are counted, not guessed at.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::events::{AccountEvent, Method, ResetBy};
use super::state::{
    Account, Login, PendingEnrollment, Profile, ResetRequest, ResetStatus, TotpStatus,
};
use crate::ids::{DeviceId, EnrollmentId};

/// How a device stopped being the account's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceEnd {
    /// The user turned TOTP off (FAQ 4).
    Disabled,
    /// Another activation bound a new device while this one was still bound. The domain refuses
    /// that today; kept so a replayed log that says so still reads correctly.
    Replaced,
    /// The user reset TOTP through an emailed link (flow 3).
    ResetByLink,
    /// A helpdesk operator reset TOTP on the user's request (FAQ 5).
    ResetByHelpdesk,
}

/// One device the account has had.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub enrollment_id: EnrollmentId,
    pub label: String,
    pub platform: Option<String>,
    pub method: Method,
    pub activated_at: DateTime<Utc>,
    /// When it stopped being the account's device; `None` while it still is.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<DeviceEnd>,
}

/// The account folded up to some point of its stream, with its device history.
#[derive(Debug, Clone, Default)]
pub struct AccountHistory {
    pub account: Account,
    /// Every device ever bound, in activation order.
    pub devices: Vec<DeviceRecord>,
    /// Events folded.
    pub events: u64,
    /// Events skipped because this version does not know them.
    pub unrecognised: u64,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// What the account looked like at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateAsOf {
    pub as_of: DateTime<Utc>,
    pub profile: Option<Profile>,
    pub totp_status: TotpStatus,
    /// The device bound at that instant.
    pub device: Option<DeviceRecord>,
    /// Every device bound up to that instant.
    pub devices: Vec<DeviceRecord>,
    pub failed_attempts: u32,
    pub locked_until: Option<DateTime<Utc>>,
    /// Locked until a helpdesk unlock (after too many locks in a row), whatever `locked_until`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked_until_unlock: bool,
    /// Logins still waiting at that instant (those past their expiry count as expired).
    pub pending_logins: Vec<Login>,
    /// An activation QR code still valid at that instant.
    pub pending_enrollment: Option<PendingEnrollment>,
    /// Emailed reset links still usable at that instant.
    pub pending_resets: Vec<ResetRequest>,
    pub events: u64,
    pub unrecognised_events: u64,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl AccountHistory {
    /// Folds one event recorded at `recorded_at`.
    pub fn record(&mut self, event: &AccountEvent, recorded_at: DateTime<Utc>) {
        match event {
            AccountEvent::TotpActivated {
                enrollment_id,
                device_id,
                device_label,
                platform,
                method,
                at,
                ..
            } => {
                self.end_current_device(*at, DeviceEnd::Replaced);
                self.devices.push(DeviceRecord {
                    device_id: *device_id,
                    enrollment_id: *enrollment_id,
                    label: device_label.clone(),
                    platform: platform.clone(),
                    method: *method,
                    activated_at: *at,
                    ended_at: None,
                    ended_by: None,
                });
            }
            AccountEvent::TotpDisabled { at, .. } => {
                self.end_current_device(*at, DeviceEnd::Disabled);
            }
            AccountEvent::TotpReset { by, at, .. } => {
                let how = match by {
                    ResetBy::Link { .. } => DeviceEnd::ResetByLink,
                    ResetBy::Helpdesk { .. } => DeviceEnd::ResetByHelpdesk,
                };
                self.end_current_device(*at, how);
            }
            _ => {}
        }
        self.account.apply(event);
        self.events += 1;
        self.last_event_at = Some(recorded_at);
    }

    /// Counts an event this version cannot decode; it changes nothing it could misread.
    pub fn skip_unrecognised(&mut self, recorded_at: DateTime<Utc>) {
        self.unrecognised += 1;
        self.last_event_at = Some(recorded_at);
    }

    fn end_current_device(&mut self, at: DateTime<Utc>, how: DeviceEnd) {
        if let Some(device) = self.devices.iter_mut().rev().find(|d| d.ended_at.is_none()) {
            device.ended_at = Some(at);
            device.ended_by = Some(how);
        }
    }

    /// The account at `as_of`, given that every event recorded up to `as_of` (and none after)
    /// has been folded. Time-based facts (a lock running out, a login expiring unanswered) are
    /// judged at `as_of`, as the write side judges them at its `now`.
    pub fn state_as_of(&self, as_of: DateTime<Utc>) -> StateAsOf {
        let account = &self.account;
        StateAsOf {
            as_of,
            profile: account.profile.clone(),
            totp_status: account.totp_status,
            device: match account.totp_status {
                TotpStatus::Active => self
                    .devices
                    .iter()
                    .rev()
                    .find(|d| d.ended_at.is_none())
                    .cloned(),
                _ => None,
            },
            devices: self.devices.clone(),
            failed_attempts: account.lockout.failed_attempts,
            locked_until: account.lockout.locked_at(as_of),
            locked_until_unlock: account.lockout.until_unlock,
            pending_logins: account
                .pending_logins()
                .filter(|l| !l.is_overdue(as_of))
                .cloned()
                .collect(),
            pending_enrollment: account
                .pending_enrollment
                .clone()
                .filter(|e| e.expires_at > as_of),
            pending_resets: account
                .reset_requests
                .iter()
                .filter(|r| r.status == ResetStatus::Pending && r.expires_at > as_of)
                .cloned()
                .collect(),
            events: self.events,
            unrecognised_events: self.unrecognised,
            last_event_at: self.last_event_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::account::{CancelReason, LoginStage, RejectReason};
    use crate::ids::{LoginId, UserId, UserType};

    fn t(minutes: i64) -> DateTime<Utc> {
        crate::testing::t0() + Duration::minutes(minutes)
    }

    fn login(n: u128) -> LoginId {
        LoginId(Uuid::from_u128(0x1000 + n))
    }

    fn activated(n: u128, at: DateTime<Utc>) -> AccountEvent {
        AccountEvent::TotpActivated {
            enrollment_id: EnrollmentId(Uuid::from_u128(0xE000 + n)),
            device_id: DeviceId(Uuid::from_u128(0xD000 + n)),
            device_label: format!("phone {n}"),
            platform: None,
            method: Method::Code,
            step: 1000 + n as u64,
            device_token_sha256: None,
            at,
        }
    }

    fn started(n: u128, at: DateTime<Utc>) -> AccountEvent {
        AccountEvent::LoginStarted {
            login_id: login(n),
            stage: LoginStage::Approval,
            expires_at: at + Duration::minutes(10),
            approval_number: None,
            client_ip: None,
            user_agent: None,
            at,
        }
    }

    /// A scripted life: registered, activated, a login, five failures and a lock, disabled,
    /// re-activated on another phone.
    fn life() -> Vec<(DateTime<Utc>, AccountEvent)> {
        let mut events = vec![
            (
                t(0),
                AccountEvent::AccountRegistered {
                    user_type: UserType::Penyedia,
                    user_id: UserId::parse("ppk1").unwrap(),
                    email: None,
                    name: None,
                },
            ),
            (t(1), activated(1, t(1))),
            (t(2), started(1, t(2))),
            (
                t(3),
                AccountEvent::LoginApproved {
                    login_id: login(1),
                    method: Method::Code,
                    step: 2000,
                    at: t(3),
                },
            ),
            (t(10), started(2, t(10))),
        ];
        for failed in 1..=5 {
            events.push((
                t(11),
                AccountEvent::CodeRejected {
                    login_id: Some(login(2)),
                    method: Method::Code,
                    reason: RejectReason::WrongCode,
                    failed_attempts: failed,
                    at: t(11),
                },
            ));
        }
        events.extend([
            (
                t(11),
                AccountEvent::AccountLocked {
                    until: t(16),
                    lock_number: 1,
                    until_unlock: false,
                    at: t(11),
                },
            ),
            (
                t(30),
                AccountEvent::LoginCancelled {
                    login_id: login(2),
                    reason: CancelReason::Portal,
                    at: t(30),
                },
            ),
            (
                t(40),
                AccountEvent::TotpDisabled {
                    enrollment_id: EnrollmentId(Uuid::from_u128(0xE001)),
                    login_id: login(1),
                    at: t(40),
                },
            ),
            (t(50), activated(2, t(50))),
        ]);
        events
    }

    fn as_of(at: DateTime<Utc>) -> StateAsOf {
        let mut history = AccountHistory::default();
        for (recorded_at, event) in life().iter().filter(|(r, _)| *r <= at) {
            history.record(event, *recorded_at);
        }
        history.state_as_of(at)
    }

    #[test]
    fn before_activation_the_account_is_inactive_with_no_device() {
        let state = as_of(t(0));
        assert_eq!(state.totp_status, TotpStatus::Inactive);
        assert!(state.device.is_none() && state.devices.is_empty());
        assert_eq!(state.events, 1);
    }

    #[test]
    fn a_pending_login_shows_until_it_expires_unanswered() {
        assert_eq!(as_of(t(10)).pending_logins.len(), 1);
        assert!(
            as_of(t(21)).pending_logins.is_empty(),
            "ten minutes later it counts as expired"
        );
    }

    #[test]
    fn a_lock_shows_while_it_runs_and_not_after() {
        let locked = as_of(t(12));
        assert_eq!(locked.locked_until, Some(t(16)));
        assert_eq!(locked.totp_status, TotpStatus::Active);
        assert_eq!(as_of(t(17)).locked_until, None);
        assert_eq!(as_of(t(11) - Duration::seconds(1)).failed_attempts, 0);
    }

    #[test]
    fn disable_ends_the_device_and_reactivation_adds_another() {
        let disabled = as_of(t(45));
        assert_eq!(disabled.totp_status, TotpStatus::Disabled);
        assert!(disabled.device.is_none());
        assert_eq!(disabled.devices.len(), 1);
        assert_eq!(disabled.devices[0].ended_at, Some(t(40)));
        assert_eq!(disabled.devices[0].ended_by, Some(DeviceEnd::Disabled));

        let again = as_of(t(60));
        assert_eq!(again.totp_status, TotpStatus::Active);
        assert_eq!(again.devices.len(), 2);
        let current = again.device.expect("the second phone");
        assert_eq!(current.label, "phone 2");
        assert_eq!(current.activated_at, t(50));
        assert!(current.ended_at.is_none());
    }

    #[test]
    fn the_fold_agrees_with_the_write_sides_state() {
        let mut history = AccountHistory::default();
        for (at, event) in life() {
            history.record(&event, at);
        }
        let events: Vec<AccountEvent> = life().into_iter().map(|(_, e)| e).collect();
        assert_eq!(history.account, Account::from_events(&events));
    }

    #[test]
    fn unrecognised_events_are_counted_not_folded() {
        let mut history = AccountHistory::default();
        history.skip_unrecognised(t(1));
        let state = history.state_as_of(t(2));
        assert_eq!(state.unrecognised_events, 1);
        assert_eq!(state.events, 0);
        assert_eq!(state.totp_status, TotpStatus::Inactive);
    }
}
