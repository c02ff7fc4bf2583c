//! The account's rules, one small test each: given the past as events, when one command arrives
//! at one instant, then these events (or this refusal). The tests play the part of the user's
//! phone, computing codes from the secret as an authenticator would.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;
use crate::code::{ApprovalNumber, TotpCode};
use crate::ids::{DeviceId, EnrollmentId, LoginId, UserId, UserType};
use crate::policy::Policy;
use crate::testing::{given, t0, Call, Given};
use crate::totp::{self, TotpSecret};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const EMAIL: &str = "ppk1@lpse.sumselprov.go.id";
const NAME: &str = "PPK Satu";
const CLIENT_IP: &str = "10.20.30.40";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64)";
const DEVICE_LABEL: &str = "SPSE Authenticator on Pixel 7";
const PLATFORM: &str = "android";
/// SHA-256 of the device token issued to the phone at activation.
const TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_TOKEN: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn user_id() -> UserId {
    UserId::parse("ppk1").unwrap()
}

fn login(n: u128) -> LoginId {
    LoginId(Uuid::from_u128(0x1000 + n))
}

fn enrollment(n: u128) -> EnrollmentId {
    EnrollmentId(Uuid::from_u128(0xE000 + n))
}

fn device(n: u128) -> DeviceId {
    DeviceId(Uuid::from_u128(0xD000 + n))
}

/// The number the portal shows beside an approval login.
fn number() -> ApprovalNumber {
    ApprovalNumber::new(42).unwrap()
}

fn other_number() -> ApprovalNumber {
    ApprovalNumber::new(17).unwrap()
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn seconds(n: i64) -> Duration {
    Duration::seconds(n)
}

/// The secret sealed under enrollment 1: the first device's.
fn secret() -> TotpSecret {
    TotpSecret::from_bytes(b"12345678901234567890".to_vec())
}

/// The secret sealed under enrollment 2: the device activated after a disable.
fn new_secret() -> TotpSecret {
    TotpSecret::from_bytes(vec![0x42; totp::SECRET_BYTES])
}

fn opened(enrollment_id: EnrollmentId, secret: TotpSecret) -> Option<OpenedSecret> {
    Some(OpenedSecret {
        enrollment_id,
        secret,
    })
}

fn first_secret() -> Option<OpenedSecret> {
    opened(enrollment(1), secret())
}

fn step(now: DateTime<Utc>) -> u64 {
    totp::step_at(now)
}

fn code_at_step(secret: &TotpSecret, step: u64) -> TotpCode {
    TotpCode::parse(&totp::code_for_step(secret, step)).unwrap()
}

/// What the phone shows at `now`.
fn code_now(secret: &TotpSecret, now: DateTime<Utc>) -> TotpCode {
    code_at_step(secret, step(now))
}

/// A code that matches no step in the window at `now`.
fn wrong_code(secret: &TotpSecret, now: DateTime<Utc>) -> TotpCode {
    let valid = [
        totp::code_for_step(secret, step(now)),
        totp::code_for_step(secret, step(now) - 1),
    ];
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    TotpCode::parse(&wrong).unwrap()
}

// ----- commands -----

/// A login started by the portal; `enrollment` is what the caller sealed for a QR code, if any.
fn start_login(login_id: LoginId, enrollment: Option<EnrollmentId>) -> Call {
    start_login_as(login_id, enrollment, Some(EMAIL), Some(NAME))
}

fn start_login_as(
    login_id: LoginId,
    enrollment: Option<EnrollmentId>,
    email: Option<&str>,
    name: Option<&str>,
) -> Call {
    Call::new(StartLogin {
        user_type: UserType::NonPenyedia,
        user_id: user_id(),
        email: email.map(str::to_owned),
        name: name.map(str::to_owned),
        login_id,
        client_ip: Some(CLIENT_IP.to_owned()),
        user_agent: Some(USER_AGENT.to_owned()),
        approval_number: number(),
    })
    .with_enrollment(enrollment)
}

/// `code` typed into `login_id`; `secret` is what the caller opened from the vault, if anything.
fn submit(login_id: LoginId, code: TotpCode, secret: Option<OpenedSecret>) -> Call {
    Call::new(SubmitCode { login_id, code }).with_secret(secret)
}

/// The phone scans enrollment's QR and proves it with `code`; it becomes device 1 with TOKEN.
fn activate(enrollment_id: EnrollmentId, code: TotpCode, secret: Option<OpenedSecret>) -> Call {
    Call::new(ActivateDevice {
        enrollment_id,
        code,
        device_id: device(1),
        device_label: DEVICE_LABEL.to_owned(),
        platform: Some(PLATFORM.to_owned()),
        device_token_sha256: TOKEN.to_owned(),
    })
    .with_secret(secret)
}

/// Device 1 (TOKEN) approves `login_id` with `code` and the picked `number`.
fn approve(login_id: LoginId, code: TotpCode, number: Option<ApprovalNumber>) -> Call {
    Call::new(ApproveOnDevice {
        login_id,
        device_token_sha256: TOKEN.to_owned(),
        code,
        number,
    })
    .with_secret(first_secret())
}

fn deny(login_id: LoginId) -> Call {
    Call::new(DenyOnDevice {
        login_id,
        device_token_sha256: TOKEN.to_owned(),
    })
}

fn cancel(login_id: LoginId) -> Call {
    Call::new(CancelLogin { login_id })
}

fn disable(login_id: LoginId, code: TotpCode) -> Call {
    Call::new(Disable { login_id, code }).with_secret(first_secret())
}

// ----- expected events -----

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered {
        user_type: UserType::NonPenyedia,
        user_id: user_id(),
        email: Some(EMAIL.to_owned()),
        name: Some(NAME.to_owned()),
    }
}

fn enrollment_started(
    enrollment_id: EnrollmentId,
    login_id: LoginId,
    at: DateTime<Utc>,
) -> AccountEvent {
    AccountEvent::EnrollmentStarted {
        enrollment_id,
        login_id,
        expires_at: at + minutes(10),
    }
}

/// A login as started by [`start_login`] under the default policy.
fn login_started(login_id: LoginId, stage: LoginStage, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginStarted {
        login_id,
        stage,
        expires_at: at + minutes(10),
        approval_number: (stage == LoginStage::Approval).then_some(number()),
        client_ip: Some(CLIENT_IP.to_owned()),
        user_agent: Some(USER_AGENT.to_owned()),
        at,
    }
}

fn approved(login_id: LoginId, method: Method, step: u64, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginApproved {
        login_id,
        method,
        step,
        at,
    }
}

fn rejected(
    login_id: LoginId,
    method: Method,
    reason: RejectReason,
    failed_attempts: u32,
    at: DateTime<Utc>,
) -> AccountEvent {
    AccountEvent::CodeRejected {
        login_id: Some(login_id),
        method,
        reason,
        failed_attempts,
        at,
    }
}

fn locked(until: DateTime<Utc>, lock_number: u32, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::AccountLocked {
        until,
        lock_number,
        until_unlock: false,
        at,
    }
}

fn expired(login_id: LoginId, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginExpired { login_id, at }
}

fn cancelled(login_id: LoginId, reason: CancelReason, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginCancelled {
        login_id,
        reason,
        at,
    }
}

/// Device 1 bound by scanning enrollment 1 with a code of `at`.
fn device_activated(at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::TotpActivated {
        enrollment_id: enrollment(1),
        device_id: device(1),
        device_label: DEVICE_LABEL.to_owned(),
        platform: Some(PLATFORM.to_owned()),
        method: Method::Device,
        step: step(at),
        device_token_sha256: Some(TOKEN.to_owned()),
        at,
    }
}

// ----- histories -----

/// An account's history built by running commands through `decide`, as the service would.
struct Story {
    history: Vec<AccountEvent>,
    policy: Policy,
}

impl Story {
    fn new() -> Self {
        Story::with_policy(Policy::default())
    }

    fn with_policy(policy: Policy) -> Self {
        Story {
            history: Vec::new(),
            policy,
        }
    }

    fn state(&self) -> Account {
        Account::from_events(&self.history)
    }

    /// The history so far, ready for the next `when`.
    fn given(&self) -> Given {
        given(self.history.clone()).with_policy(self.policy.clone())
    }

    /// A setup step that must be accepted; its events join the history.
    #[track_caller]
    fn accept(&mut self, call: impl Into<Call>, now: DateTime<Utc>) -> Vec<AccountEvent> {
        let call = call.into();
        match call.decide(&self.state(), now, &self.policy) {
            Ok(events) => {
                self.history.extend(events.iter().cloned());
                events
            }
            Err(rejection) => panic!("setup {} refused: {rejection:?}", call.command.name()),
        }
    }

    /// A setup step that must be refused; what it records joins the history.
    #[track_caller]
    fn refuse(&mut self, call: impl Into<Call>, now: DateTime<Utc>) -> DomainError {
        let call = call.into();
        match call.decide(&self.state(), now, &self.policy) {
            Ok(events) => panic!("setup {} accepted: {events:?}", call.command.name()),
            Err(rejection) => {
                self.history.extend(rejection.record);
                rejection.error
            }
        }
    }

    /// `count` wrong codes typed into `login_id` at `now`; the last refusal.
    #[track_caller]
    fn fail(&mut self, login_id: LoginId, count: u32, now: DateTime<Utc>) -> DomainError {
        let mut last = None;
        for _ in 0..count {
            last = Some(self.refuse(
                submit(login_id, wrong_code(&secret(), now), first_secret()),
                now,
            ));
        }
        last.unwrap()
    }

    /// Five wrong codes into `login_id` at `now`; when the lock ends.
    #[track_caller]
    fn lock(&mut self, login_id: LoginId, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.fail(login_id, 5, now) {
            DomainError::AccountLocked { until } => until,
            other => panic!("five failures did not lock: {other:?}"),
        }
    }
}

/// The QR code of enrollment 1 is on screen for login 1 since `at`.
fn awaiting_activation(at: DateTime<Utc>) -> Story {
    awaiting_activation_with(Policy::default(), at)
}

fn awaiting_activation_with(policy: Policy, at: DateTime<Utc>) -> Story {
    let mut story = Story::with_policy(policy);
    story.accept(start_login(login(1), Some(enrollment(1))), at);
    story
}

/// Device 1 (TOKEN, `secret()`) scanned the QR at `at`, approving login 1.
fn active_since(at: DateTime<Utc>) -> Story {
    active_with(Policy::default(), at)
}

fn active_with(policy: Policy, at: DateTime<Utc>) -> Story {
    let mut story = awaiting_activation_with(policy, at);
    story.accept(
        activate(enrollment(1), code_now(&secret(), at), first_secret()),
        at,
    );
    story
}

/// Active since five minutes before `t0()`; login 2 waits for approval (number 42) since `t0()`.
fn waiting_for_approval() -> Story {
    let mut story = active_since(t0() - minutes(5));
    story.accept(start_login(login(2), None), t0());
    story
}

/// Login 2 approved on the device at `t0()` (step S); login 3 waits since a second later.
fn approved_at_t0() -> Story {
    let mut story = waiting_for_approval();
    story.accept(
        approve(login(2), code_now(&secret(), t0()), Some(number())),
        t0(),
    );
    story.accept(start_login(login(3), None), t0() + seconds(1));
    story
}

/// Active since `t0() - 5min`; login 2 approved at `t0() - 2min`; login 3 waits since
/// `t0() - 1min`.
fn recently_approved() -> Story {
    let mut story = active_since(t0() - minutes(5));
    let approved_at = t0() - minutes(2);
    story.accept(start_login(login(2), None), approved_at);
    story.accept(
        approve(login(2), code_now(&secret(), approved_at), Some(number())),
        approved_at,
    );
    story.accept(start_login(login(3), None), t0() - minutes(1));
    story
}

/// `recently_approved`, then TOTP disabled at `t0()`.
fn disabled_at_t0() -> Story {
    let mut story = recently_approved();
    story.accept(disable(login(2), code_now(&secret(), t0())), t0());
    story
}

// ---------------------------------------------------------------------------------------------
// StartLogin
// ---------------------------------------------------------------------------------------------

#[test]
fn start_login_registers_an_unknown_account() {
    let state = given(vec![])
        .when(start_login(login(1), Some(enrollment(1))), t0())
        .then(vec![
            registered(),
            enrollment_started(enrollment(1), login(1), t0()),
            login_started(login(1), LoginStage::Activation, t0()),
        ]);
    let profile = state.profile.unwrap();
    assert_eq!(profile.user_type, UserType::NonPenyedia);
    assert_eq!(profile.user_id.as_str(), "PPK1");
    assert_eq!(profile.email.as_deref(), Some(EMAIL));
}

#[test]
fn start_login_records_a_changed_email_or_name_as_a_profile_update() {
    let story = active_since(t0() - minutes(5));
    let new_email = "ppk1.baru@lpse.sumselprov.go.id";
    let state = story
        .given()
        .when(
            start_login_as(login(2), None, Some(new_email), Some(NAME)),
            t0(),
        )
        .then(vec![
            AccountEvent::ProfileUpdated {
                email: Some(new_email.to_owned()),
                name: None,
            },
            login_started(login(2), LoginStage::Approval, t0()),
        ]);
    assert_eq!(state.profile.unwrap().email.as_deref(), Some(new_email));

    story
        .given()
        .when(
            start_login_as(login(2), None, Some(EMAIL), Some("PPK Dua")),
            t0(),
        )
        .then(vec![
            AccountEvent::ProfileUpdated {
                email: None,
                name: Some("PPK Dua".to_owned()),
            },
            login_started(login(2), LoginStage::Approval, t0()),
        ]);
}

#[test]
fn start_login_with_an_unchanged_profile_records_no_profile_update() {
    let story = active_since(t0() - minutes(5));
    story
        .given()
        .when(start_login(login(2), None), t0())
        .then(vec![login_started(login(2), LoginStage::Approval, t0())]);
    // A portal that sends no email or name changes nothing either.
    story
        .given()
        .when(start_login_as(login(2), None, None, None), t0())
        .then(vec![login_started(login(2), LoginStage::Approval, t0())]);
}

#[test]
fn start_login_without_an_active_device_starts_an_enrollment_and_an_activation_login() {
    let mut story = Story::new();
    story.accept(
        Call::new(StartLogin {
            user_type: UserType::NonPenyedia,
            user_id: user_id(),
            email: Some(EMAIL.to_owned()),
            name: Some(NAME.to_owned()),
            login_id: login(1),
            client_ip: None,
            user_agent: None,
            approval_number: number(),
        })
        .with_enrollment(Some(enrollment(1))),
        t0() - minutes(30),
    );
    // The first login expired unused: the account is registered but still inactive.
    story.accept(AccountCommand::ExpireStaleLogins, t0() - minutes(15));
    let state = story
        .given()
        .when(start_login(login(2), Some(enrollment(2))), t0())
        .then(vec![
            enrollment_started(enrollment(2), login(2), t0()),
            AccountEvent::LoginStarted {
                login_id: login(2),
                stage: LoginStage::Activation,
                expires_at: t0() + minutes(10),
                approval_number: None,
                client_ip: Some(CLIENT_IP.to_owned()),
                user_agent: Some(USER_AGENT.to_owned()),
                at: t0(),
            },
        ]);
    assert_eq!(state.totp_status, TotpStatus::Inactive);
    assert_eq!(
        state.login(login(2)).unwrap().status,
        LoginStatus::AwaitingActivation
    );
    let pending = state.pending_enrollment.unwrap();
    assert_eq!(pending.enrollment_id, enrollment(2));
    assert_eq!(pending.login_id, login(2));
}

#[test]
fn a_new_activation_login_supersedes_the_pending_activation_login() {
    let mut story = awaiting_activation(t0());
    let later = t0() + minutes(2);
    story
        .given()
        .when(start_login(login(2), Some(enrollment(2))), later)
        .then(vec![
            cancelled(login(1), CancelReason::Superseded, later),
            enrollment_started(enrollment(2), login(2), later),
            login_started(login(2), LoginStage::Activation, later),
        ]);
    story.accept(start_login(login(2), Some(enrollment(2))), later);
    // The old QR code can no longer activate anything.
    let now = later + seconds(10);
    story
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(DomainError::EnrollmentNotFound);
}

#[test]
fn start_login_with_an_active_device_starts_an_approval_login_with_the_number_to_match() {
    active_since(t0() - minutes(5))
        .given()
        .when(start_login(login(2), Some(enrollment(2))), t0())
        .then(vec![AccountEvent::LoginStarted {
            login_id: login(2),
            stage: LoginStage::Approval,
            expires_at: t0() + minutes(10),
            approval_number: Some(number()),
            client_ip: Some(CLIENT_IP.to_owned()),
            user_agent: Some(USER_AGENT.to_owned()),
            at: t0(),
        }]);
}

#[test]
fn start_login_without_number_matching_carries_no_approval_number() {
    let policy = Policy {
        number_matching: false,
        ..Policy::default()
    };
    active_with(policy, t0() - minutes(5))
        .given()
        .when(start_login(login(2), None), t0())
        .then_events(|events| {
            assert!(
                matches!(
                    events,
                    [AccountEvent::LoginStarted {
                        stage: LoginStage::Approval,
                        approval_number: None,
                        ..
                    }]
                ),
                "{events:?}"
            );
        });
}

#[test]
fn starting_more_than_max_pending_logins_cancels_the_oldest() {
    let mut story = active_since(t0() - minutes(5));
    let max = story.policy.max_pending_logins;
    for n in 0..max {
        let n = u128::try_from(n).unwrap();
        story.accept(start_login(login(10 + n), None), t0() + seconds(1));
    }
    let oldest = login(10);
    let newest = login(10 + u128::try_from(max).unwrap());
    let now = t0() + minutes(1);
    let state = story
        .given()
        .when(start_login(newest, None), now)
        .then(vec![
            cancelled(oldest, CancelReason::Superseded, now),
            login_started(newest, LoginStage::Approval, now),
        ]);
    assert_eq!(state.pending_logins().count(), max);
    assert_eq!(state.login(oldest).unwrap().status, LoginStatus::Cancelled);
}

#[test]
fn start_login_records_overdue_pending_logins_as_expired() {
    let story = waiting_for_approval();
    // Login 2 expires at t0 + 10 min exactly.
    let now = t0() + minutes(10);
    story
        .given()
        .when(start_login(login(3), None), now)
        .then(vec![
            expired(login(2), now),
            login_started(login(3), LoginStage::Approval, now),
        ]);
}

#[test]
fn an_overdue_activation_login_is_expired_not_superseded_by_a_new_one() {
    let now = t0() + minutes(11);
    awaiting_activation(t0())
        .given()
        .when(start_login(login(2), Some(enrollment(2))), now)
        .then(vec![
            expired(login(1), now),
            enrollment_started(enrollment(2), login(2), now),
            login_started(login(2), LoginStage::Activation, now),
        ]);
}

#[test]
fn a_locked_account_cannot_start_a_login_and_nothing_is_recorded() {
    let mut story = waiting_for_approval();
    let until = story.lock(login(2), t0());
    story
        .given()
        .when(start_login(login(3), None), t0() + minutes(1))
        .then_err(DomainError::AccountLocked { until });
    // The same for an account still waiting for activation.
    let mut story = awaiting_activation(t0());
    let until = story.lock(login(1), t0());
    story
        .given()
        .when(
            start_login(login(2), Some(enrollment(2))),
            t0() + minutes(14),
        )
        .then_err(DomainError::AccountLocked { until });
}

#[test]
fn start_login_without_a_prepared_enrollment_when_one_is_needed_is_stale() {
    given(vec![])
        .when(start_login(login(1), None), t0())
        .then_err(DomainError::StalePreparation);
    awaiting_activation(t0())
        .given()
        .when(start_login(login(2), None), t0() + minutes(1))
        .then_err(DomainError::StalePreparation);
}

// ---------------------------------------------------------------------------------------------
// Activation by typed code
// ---------------------------------------------------------------------------------------------

#[test]
fn the_right_code_on_an_activation_login_activates_totp_and_approves_the_login() {
    let now = t0() + seconds(10);
    let s = step(now);
    let state = awaiting_activation(t0())
        .given()
        .when(
            submit(login(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_events(|events| {
            assert_eq!(events.len(), 2, "{events:?}");
            assert!(
                matches!(
                    &events[0],
                    AccountEvent::TotpActivated {
                        enrollment_id,
                        method: Method::Code,
                        step,
                        device_token_sha256: None,
                        at,
                        ..
                    } if *enrollment_id == enrollment(1) && *step == s && *at == now
                ),
                "{:?}",
                events[0]
            );
            assert_eq!(events[1], approved(login(1), Method::Code, s, now));
        });
    assert_eq!(state.totp_status, TotpStatus::Active);
    assert_eq!(state.device.as_ref().unwrap().enrollment_id, enrollment(1));
    assert_eq!(state.pending_enrollment, None);
    assert_eq!(state.last_accepted_step, Some(s));
    assert_eq!(state.login(login(1)).unwrap().status, LoginStatus::Approved);
}

#[test]
fn a_wrong_activation_code_is_rejected_and_counted() {
    let mut story = awaiting_activation(t0());
    let now = t0() + seconds(5);
    let state = story
        .given()
        .when(
            submit(login(1), wrong_code(&secret(), now), first_secret()),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(1),
                Method::Code,
                RejectReason::WrongCode,
                1,
                now,
            )],
        );
    assert_eq!(state.totp_status, TotpStatus::Inactive);
    assert_eq!(state.lockout.failed_attempts, 1);

    story.fail(login(1), 1, now);
    story
        .given()
        .when(
            submit(login(1), wrong_code(&secret(), now), first_secret()),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 3 },
            vec![rejected(
                login(1),
                Method::Code,
                RejectReason::WrongCode,
                2,
                now,
            )],
        );
}

#[test]
fn an_activation_code_from_one_step_back_is_accepted() {
    let now = t0() + seconds(5);
    let previous = step(now) - 1;
    awaiting_activation(t0())
        .given()
        .when(
            submit(login(1), code_at_step(&secret(), previous), first_secret()),
            now,
        )
        .then_events(|events| {
            assert_eq!(
                events.last(),
                Some(&approved(login(1), Method::Code, previous, now))
            );
        });
}

#[test]
fn an_activation_code_from_two_steps_back_is_refused() {
    let now = t0() + seconds(5);
    awaiting_activation(t0())
        .given()
        .when(
            submit(
                login(1),
                code_at_step(&secret(), step(now) - 2),
                first_secret(),
            ),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(1),
                Method::Code,
                RejectReason::WrongCode,
                1,
                now,
            )],
        );
}

#[test]
fn an_activation_code_from_the_next_step_is_refused() {
    let now = t0() + seconds(5);
    awaiting_activation(t0())
        .given()
        .when(
            submit(
                login(1),
                code_at_step(&secret(), step(now) + 1),
                first_secret(),
            ),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(1),
                Method::Code,
                RejectReason::WrongCode,
                1,
                now,
            )],
        );
}

#[test]
fn an_activation_with_a_secret_for_another_enrollment_is_stale() {
    let story = awaiting_activation(t0());
    let now = t0() + seconds(5);
    story
        .given()
        .when(
            submit(
                login(1),
                code_now(&new_secret(), now),
                opened(enrollment(2), new_secret()),
            ),
            now,
        )
        .then_err(DomainError::StalePreparation);
    // No secret opened at all is the same mistake of the caller, and not the user's failure.
    story
        .given()
        .when(submit(login(1), code_now(&secret(), now), None), now)
        .then_err(DomainError::StalePreparation);
}

#[test]
fn a_typed_code_cannot_activate_an_enrollment_past_its_ttl() {
    let policy = Policy {
        enrollment_ttl: minutes(5),
        ..Policy::default()
    };
    // The QR code expires at t0 + 5 min; the login that shows it lives until t0 + 10 min.
    let now = t0() + minutes(6);
    awaiting_activation_with(policy, t0())
        .given()
        .when(
            submit(login(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(DomainError::EnrollmentExpired);
}

// ---------------------------------------------------------------------------------------------
// Activation by device (ActivateDevice)
// ---------------------------------------------------------------------------------------------

#[test]
fn activating_a_device_binds_it_with_its_token_digest_and_approves_the_login_that_showed_the_qr() {
    let now = t0() + minutes(1);
    let state = awaiting_activation(t0())
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then(vec![
            device_activated(now),
            approved(login(1), Method::Device, step(now), now),
        ]);
    assert_eq!(state.totp_status, TotpStatus::Active);
    assert_eq!(state.pending_enrollment, None);
    let bound = state.device.unwrap();
    assert_eq!(bound.device_id, device(1));
    assert_eq!(bound.token_sha256.as_deref(), Some(TOKEN));
    assert_eq!(bound.enrollment_id, enrollment(1));
}

#[test]
fn a_second_activation_while_active_is_refused_as_already_active() {
    let story = active_since(t0() - minutes(5));
    story
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), t0()), first_secret()),
            t0(),
        )
        .then_err(DomainError::AlreadyActive);
    story
        .given()
        .when(
            activate(
                enrollment(2),
                code_now(&new_secret(), t0()),
                opened(enrollment(2), new_secret()),
            ),
            t0(),
        )
        .then_err(DomainError::AlreadyActive);
}

#[test]
fn activating_an_unknown_enrollment_is_refused() {
    let now = t0() + seconds(5);
    awaiting_activation(t0())
        .given()
        .when(
            activate(
                enrollment(9),
                code_now(&secret(), now),
                opened(enrollment(9), secret()),
            ),
            now,
        )
        .then_err(DomainError::EnrollmentNotFound);
    given(vec![registered()])
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(DomainError::EnrollmentNotFound);
}

#[test]
fn activating_an_expired_enrollment_is_refused_and_records_the_overdue_login_as_expired() {
    let now = t0() + minutes(10);
    let state = awaiting_activation(t0())
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_rejected_recording(DomainError::EnrollmentExpired, vec![expired(login(1), now)]);
    assert_eq!(state.totp_status, TotpStatus::Inactive);
    assert_eq!(state.pending_enrollment, None);
}

#[test]
fn a_device_cannot_activate_an_enrollment_past_its_ttl_while_its_login_still_waits() {
    let policy = Policy {
        enrollment_ttl: minutes(5),
        ..Policy::default()
    };
    let now = t0() + minutes(6);
    awaiting_activation_with(policy, t0())
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(DomainError::EnrollmentExpired);
}

#[test]
fn a_wrong_code_on_device_activation_counts_as_a_failure() {
    let now = t0() + seconds(5);
    awaiting_activation(t0())
        .given()
        .when(
            activate(enrollment(1), wrong_code(&secret(), now), first_secret()),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(1),
                Method::Device,
                RejectReason::WrongCode,
                1,
                now,
            )],
        );
}

#[test]
fn after_disable_a_new_enrollment_can_be_activated() {
    let mut story = disabled_at_t0();
    let started = t0() + minutes(1);
    story.accept(start_login(login(4), Some(enrollment(2))), started);
    let now = started + seconds(20);
    let state = story
        .given()
        .when(
            Call::new(ActivateDevice {
                enrollment_id: enrollment(2),
                code: code_now(&new_secret(), now),
                device_id: device(2),
                device_label: "SPSE Authenticator on the new phone".to_owned(),
                platform: None,
                device_token_sha256: OTHER_TOKEN.to_owned(),
            })
            .with_secret(opened(enrollment(2), new_secret())),
            now,
        )
        .then(vec![
            AccountEvent::TotpActivated {
                enrollment_id: enrollment(2),
                device_id: device(2),
                device_label: "SPSE Authenticator on the new phone".to_owned(),
                platform: None,
                method: Method::Device,
                step: step(now),
                device_token_sha256: Some(OTHER_TOKEN.to_owned()),
                at: now,
            },
            approved(login(4), Method::Device, step(now), now),
        ]);
    assert_eq!(state.totp_status, TotpStatus::Active);
    let bound = state.device.unwrap();
    assert_eq!(bound.device_id, device(2));
    assert_eq!(bound.enrollment_id, enrollment(2));
}

// ---------------------------------------------------------------------------------------------
// Replay (RFC 6238 section 5.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_code_at_the_last_accepted_step_is_refused_as_replayed() {
    let story = approved_at_t0();
    let s = step(t0());
    // Within step S, and in step S + 1 where S is still inside the window.
    for now in [t0() + seconds(5), t0() + seconds(20)] {
        story
            .given()
            .when(
                submit(login(3), code_at_step(&secret(), s), first_secret()),
                now,
            )
            .then_rejected_recording(
                DomainError::CodeAlreadyUsed { attempts_left: 4 },
                vec![rejected(
                    login(3),
                    Method::Code,
                    RejectReason::Replayed,
                    1,
                    now,
                )],
            );
    }
}

#[test]
fn a_code_one_step_before_the_last_accepted_step_is_refused_as_replayed() {
    let now = t0() + seconds(5);
    approved_at_t0()
        .given()
        .when(
            submit(
                login(3),
                code_at_step(&secret(), step(t0()) - 1),
                first_secret(),
            ),
            now,
        )
        .then_rejected_recording(
            DomainError::CodeAlreadyUsed { attempts_left: 4 },
            vec![rejected(
                login(3),
                Method::Code,
                RejectReason::Replayed,
                1,
                now,
            )],
        );
}

#[test]
fn a_code_at_the_step_after_the_last_accepted_step_is_accepted() {
    let now = t0() + seconds(20);
    let next = step(t0()) + 1;
    assert_eq!(step(now), next);
    let state = approved_at_t0()
        .given()
        .when(
            submit(login(3), code_at_step(&secret(), next), first_secret()),
            now,
        )
        .then(vec![approved(login(3), Method::Code, next, now)]);
    assert_eq!(state.last_accepted_step, Some(next));
}

#[test]
fn a_replayed_code_is_refused_on_the_device_too() {
    let now = t0() + seconds(5);
    approved_at_t0()
        .given()
        .when(
            approve(
                login(3),
                code_at_step(&secret(), step(t0())),
                Some(number()),
            ),
            now,
        )
        .then_rejected_recording(
            DomainError::CodeAlreadyUsed { attempts_left: 4 },
            vec![rejected(
                login(3),
                Method::Device,
                RejectReason::Replayed,
                1,
                now,
            )],
        );
}

#[test]
fn the_code_that_activated_the_device_cannot_approve_a_login() {
    let activated_at = t0();
    let mut story = active_since(activated_at);
    let now = activated_at + seconds(5);
    story.accept(start_login(login(2), None), now);
    story
        .given()
        .when(
            submit(login(2), code_now(&secret(), activated_at), first_secret()),
            now,
        )
        .then_rejected_recording(
            DomainError::CodeAlreadyUsed { attempts_left: 4 },
            vec![rejected(
                login(2),
                Method::Code,
                RejectReason::Replayed,
                1,
                now,
            )],
        );
}

// ---------------------------------------------------------------------------------------------
// Lockout
// ---------------------------------------------------------------------------------------------

#[test]
fn five_consecutive_failures_of_typed_codes_and_device_approvals_lock_the_account_for_15_minutes() {
    let mut story = waiting_for_approval();
    let now = t0() + seconds(5);
    let right = code_now(&secret(), now);
    let wrong = wrong_code(&secret(), now);
    let l2 = login(2);
    let steps = [
        (
            submit(l2, wrong.clone(), first_secret()),
            rejected(l2, Method::Code, RejectReason::WrongCode, 1, now),
        ),
        (
            approve(l2, wrong.clone(), Some(number())),
            rejected(l2, Method::Device, RejectReason::WrongCode, 2, now),
        ),
        (
            approve(l2, right.clone(), Some(other_number())),
            rejected(l2, Method::Device, RejectReason::NumberMismatch, 3, now),
        ),
        (
            approve(l2, wrong.clone(), Some(other_number())),
            rejected(l2, Method::Device, RejectReason::NumberMismatch, 4, now),
        ),
    ];
    for (attempts_left, (command, record)) in (1..=4).rev().zip(steps) {
        story
            .given()
            .when(command.clone(), now)
            .then_rejected_recording(DomainError::InvalidCode { attempts_left }, vec![record]);
        story.refuse(command, now);
    }
    let until = now + minutes(15);
    let state = story
        .given()
        .when(submit(l2, wrong, first_secret()), now)
        .then_rejected_recording(
            DomainError::AccountLocked { until },
            vec![
                rejected(l2, Method::Code, RejectReason::WrongCode, 5, now),
                locked(until, 1, now),
            ],
        );
    assert_eq!(state.lockout.locked_until, Some(until));
    assert_eq!(state.lockout.locks_in_a_row, 1);
}

#[test]
fn while_locked_every_code_command_is_refused_and_nothing_is_recorded() {
    let mut story = waiting_for_approval();
    let until = story.lock(login(2), t0());
    let is_locked = DomainError::AccountLocked { until };
    let now = t0() + minutes(1);
    let right = code_now(&secret(), now);
    let wrong = wrong_code(&secret(), now);
    for command in [
        submit(login(2), right.clone(), first_secret()),
        submit(login(2), wrong.clone(), first_secret()),
        approve(login(2), right.clone(), Some(number())),
        approve(login(2), wrong, Some(other_number())),
        // Login 1 (the activation) was approved six minutes ago: recent enough to disable.
        disable(login(1), right),
    ] {
        story.given().when(command, now).then_err(is_locked.clone());
    }
}

#[test]
fn while_locked_an_activation_is_refused_and_nothing_is_recorded() {
    let mut story = awaiting_activation(t0());
    let until = story.lock(login(1), t0());
    let is_locked = DomainError::AccountLocked { until };
    let now = t0() + minutes(1);
    story
        .given()
        .when(
            submit(login(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(is_locked.clone());
    story
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(is_locked);
}

#[test]
fn once_the_lock_has_passed_a_right_code_is_accepted_again() {
    let mut story = waiting_for_approval();
    let until = story.lock(login(2), t0());
    story.accept(start_login(login(3), None), until);
    let state = story
        .given()
        .when(
            submit(login(3), code_now(&secret(), until), first_secret()),
            until,
        )
        .then(vec![approved(login(3), Method::Code, step(until), until)]);
    assert_eq!(state.lockout, Lockout::default());
}

#[test]
fn after_a_lock_passes_five_more_failures_lock_for_twice_as_long() {
    let mut story = waiting_for_approval();
    let first_until = story.lock(login(2), t0());
    assert_eq!(first_until, t0() + minutes(15));
    let later = t0() + minutes(16);
    story.accept(start_login(login(3), None), later);
    assert_eq!(
        story.fail(login(3), 4, later),
        DomainError::InvalidCode { attempts_left: 1 }
    );
    let until = later + minutes(30);
    story
        .given()
        .when(
            submit(login(3), wrong_code(&secret(), later), first_secret()),
            later,
        )
        .then_rejected_recording(
            DomainError::AccountLocked { until },
            vec![
                rejected(login(3), Method::Code, RejectReason::WrongCode, 5, later),
                locked(until, 2, later),
            ],
        );
}

#[test]
fn after_the_last_lock_in_a_row_only_a_helpdesk_unlock_lets_codes_in_again() {
    let policy = Policy {
        max_locks: 2,
        base_lock: minutes(1),
        ..Policy::default()
    };
    let mut story = active_with(policy, t0() - minutes(5));
    story.accept(start_login(login(2), None), t0());
    story.lock(login(2), t0());
    let later = t0() + minutes(2);
    story.accept(start_login(login(3), None), later);
    story.fail(login(3), 4, later);
    story
        .given()
        .when(
            submit(login(3), wrong_code(&secret(), later), first_secret()),
            later,
        )
        .then_rejected_recording(
            DomainError::LockedUntilUnlock,
            vec![
                rejected(login(3), Method::Code, RejectReason::WrongCode, 5, later),
                AccountEvent::AccountLocked {
                    until: later + minutes(2),
                    lock_number: 2,
                    until_unlock: true,
                    at: later,
                },
            ],
        );
    story.fail(login(3), 1, later);
    // After the lock would have ended, even the right code is refused, recording nothing.
    let past_its_end = later + minutes(5);
    story
        .given()
        .when(
            submit(login(3), code_now(&secret(), past_its_end), first_secret()),
            past_its_end,
        )
        .then_err(DomainError::LockedUntilUnlock);
    let much_later = later + Duration::days(30);
    story
        .given()
        .when(start_login(login(4), None), much_later)
        .then_err(DomainError::LockedUntilUnlock);
    story.accept(
        Unlock {
            reason: "owner verified by phone".to_owned(),
        },
        much_later,
    );
    assert_eq!(story.state().lockout, Lockout::default());
    story.accept(start_login(login(4), None), much_later);
    story
        .given()
        .when(
            submit(login(4), code_now(&secret(), much_later), first_secret()),
            much_later,
        )
        .then(vec![approved(
            login(4),
            Method::Code,
            step(much_later),
            much_later,
        )]);
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut story = waiting_for_approval();
    story.fail(login(2), 4, t0());
    story.accept(
        submit(login(2), code_now(&secret(), t0()), first_secret()),
        t0(),
    );
    assert_eq!(story.state().lockout.failed_attempts, 0);
    let later = t0() + seconds(30);
    story.accept(start_login(login(3), None), later);
    assert_eq!(
        story.fail(login(3), 4, later),
        DomainError::InvalidCode { attempts_left: 1 }
    );
    let state = story.state();
    assert_eq!(state.lockout.failed_attempts, 4);
    assert_eq!(state.lockout.locked_at(later), None);
    // Eight failures in all, yet the right code still gets in.
    story
        .given()
        .when(
            submit(login(3), code_now(&secret(), later), first_secret()),
            later,
        )
        .then(vec![approved(login(3), Method::Code, step(later), later)]);
}

#[test]
fn a_success_after_a_lock_resets_the_doubling() {
    let mut story = waiting_for_approval();
    story.lock(login(2), t0());
    let later = t0() + minutes(16);
    story.accept(start_login(login(3), None), later);
    story.accept(
        approve(login(3), code_now(&secret(), later), Some(number())),
        later,
    );
    assert_eq!(story.state().lockout, Lockout::default());
    let again = later + seconds(30);
    story.accept(start_login(login(4), None), again);
    story.fail(login(4), 4, again);
    let until = again + minutes(15);
    story
        .given()
        .when(
            submit(login(4), wrong_code(&secret(), again), first_secret()),
            again,
        )
        .then_rejected_recording(
            DomainError::AccountLocked { until },
            vec![
                rejected(login(4), Method::Code, RejectReason::WrongCode, 5, again),
                locked(until, 1, again),
            ],
        );
}

// ---------------------------------------------------------------------------------------------
// Device approval
// ---------------------------------------------------------------------------------------------

#[test]
fn the_right_number_and_code_on_the_device_approve_the_login() {
    let state = waiting_for_approval()
        .given()
        .when(
            approve(login(2), code_now(&secret(), t0()), Some(number())),
            t0(),
        )
        .then(vec![approved(login(2), Method::Device, step(t0()), t0())]);
    let login2 = state.login(login(2)).unwrap();
    assert_eq!(login2.status, LoginStatus::Approved);
    assert_eq!(login2.method, Some(Method::Device));
}

#[test]
fn the_right_code_typed_into_the_portal_approves_an_approval_login() {
    waiting_for_approval()
        .given()
        .when(
            submit(login(2), code_now(&secret(), t0()), first_secret()),
            t0(),
        )
        .then(vec![approved(login(2), Method::Code, step(t0()), t0())]);
}

#[test]
fn an_approval_from_an_unrecognised_device_token_is_refused() {
    let story = waiting_for_approval();
    let right = code_now(&secret(), t0());
    story
        .given()
        .when(
            Call::new(ApproveOnDevice {
                login_id: login(2),
                device_token_sha256: OTHER_TOKEN.to_owned(),
                code: right,
                number: Some(number()),
            })
            .with_secret(first_secret()),
            t0(),
        )
        .then_err(DomainError::DeviceNotRecognised);
    story
        .given()
        .when(
            DenyOnDevice {
                login_id: login(2),
                device_token_sha256: OTHER_TOKEN.to_owned(),
            },
            t0(),
        )
        .then_err(DomainError::DeviceNotRecognised);
}

#[test]
fn a_device_activated_by_typed_code_has_no_token_to_recognise() {
    let mut story = awaiting_activation(t0() - minutes(5));
    let at = t0() - minutes(5);
    story.accept(
        submit(login(1), code_now(&secret(), at), first_secret()),
        at,
    );
    story.accept(start_login(login(2), None), t0());
    story
        .given()
        .when(
            approve(login(2), code_now(&secret(), t0()), Some(number())),
            t0(),
        )
        .then_err(DomainError::DeviceNotRecognised);
}

#[test]
fn a_number_mismatch_on_the_device_counts_as_a_failure() {
    waiting_for_approval()
        .given()
        .when(
            approve(login(2), code_now(&secret(), t0()), Some(other_number())),
            t0(),
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(2),
                Method::Device,
                RejectReason::NumberMismatch,
                1,
                t0(),
            )],
        );
}

#[test]
fn a_missing_number_when_one_is_shown_is_refused_and_not_counted() {
    // A programming error of the app, not a guess: nothing is recorded.
    waiting_for_approval()
        .given()
        .when(approve(login(2), code_now(&secret(), t0()), None), t0())
        .then_err(DomainError::NumberRequired);
}

#[test]
fn without_number_matching_the_device_approves_without_a_number() {
    let policy = Policy {
        number_matching: false,
        ..Policy::default()
    };
    let mut story = active_with(policy, t0() - minutes(5));
    story.accept(start_login(login(2), None), t0());
    story
        .given()
        .when(approve(login(2), code_now(&secret(), t0()), None), t0())
        .then(vec![approved(login(2), Method::Device, step(t0()), t0())]);
}

#[test]
fn a_wrong_code_on_the_device_counts_as_a_failure_even_with_the_right_number() {
    waiting_for_approval()
        .given()
        .when(
            approve(login(2), wrong_code(&secret(), t0()), Some(number())),
            t0(),
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(2),
                Method::Device,
                RejectReason::WrongCode,
                1,
                t0(),
            )],
        );
}

#[test]
fn denying_on_the_device_records_login_denied_and_counts_no_failure() {
    let state = waiting_for_approval()
        .given()
        .when(deny(login(2)), t0())
        .then(vec![AccountEvent::LoginDenied {
            login_id: login(2),
            device_id: device(1),
            at: t0(),
        }]);
    assert_eq!(state.login(login(2)).unwrap().status, LoginStatus::Denied);
    assert_eq!(state.lockout.failed_attempts, 0);
}

#[test]
fn approving_or_denying_an_activation_login_on_the_device_is_the_wrong_stage() {
    // An activation login beside an active device: only a hand-made history has one, since an
    // active account starts approval logins.
    let mut history = active_since(t0() - minutes(5)).history;
    history.push(login_started(login(9), LoginStage::Activation, t0()));
    let wrong_stage = DomainError::WrongStage {
        expected: "activation",
    };
    given(history.clone())
        .when(
            approve(login(9), code_now(&secret(), t0()), Some(number())),
            t0(),
        )
        .then_err(wrong_stage.clone());
    given(history)
        .when(deny(login(9)), t0())
        .then_err(wrong_stage);
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn submitting_to_an_overdue_login_is_refused_and_records_it_as_expired() {
    let story = waiting_for_approval();
    let now = t0() + minutes(10);
    let right = code_now(&secret(), now);
    let state = story
        .given()
        .when(submit(login(2), right.clone(), first_secret()), now)
        .then_rejected_recording(DomainError::LoginExpired, vec![expired(login(2), now)]);
    assert_eq!(state.login(login(2)).unwrap().status, LoginStatus::Expired);
    story
        .given()
        .when(approve(login(2), right, Some(number())), now)
        .then_rejected_recording(DomainError::LoginExpired, vec![expired(login(2), now)]);
    story
        .given()
        .when(cancel(login(2)), now)
        .then_rejected_recording(DomainError::LoginExpired, vec![expired(login(2), now)]);
}

#[test]
fn acting_on_an_already_expired_login_is_refused_and_nothing_is_recorded() {
    let mut story = waiting_for_approval();
    story.accept(AccountCommand::ExpireStaleLogins, t0() + minutes(11));
    let now = t0() + minutes(12);
    let right = code_now(&secret(), now);
    for command in [
        submit(login(2), right.clone(), first_secret()),
        approve(login(2), right, Some(number())),
        deny(login(2)),
        cancel(login(2)),
    ] {
        story
            .given()
            .when(command, now)
            .then_err(DomainError::LoginExpired);
    }
}

#[test]
fn expire_stale_logins_records_each_overdue_login_and_nothing_for_fresh_ones() {
    let mut story = active_since(t0() - minutes(5));
    story.accept(start_login(login(2), None), t0());
    story.accept(start_login(login(3), None), t0() + minutes(1));
    story.accept(start_login(login(4), None), t0() + minutes(5));
    let now = t0() + minutes(11);
    let state = story
        .given()
        .when(AccountCommand::ExpireStaleLogins, now)
        .then(vec![expired(login(2), now), expired(login(3), now)]);
    assert_eq!(
        state.login(login(4)).unwrap().status,
        LoginStatus::AwaitingApproval
    );
    story.accept(AccountCommand::ExpireStaleLogins, now);
    story
        .given()
        .when(AccountCommand::ExpireStaleLogins, now + minutes(1))
        .then(vec![]);
}

#[test]
fn acting_on_an_approved_denied_or_cancelled_login_is_refused_as_not_pending() {
    let mut story = approved_at_t0(); // login 2 approved, login 3 waiting
    story.accept(deny(login(3)), t0() + seconds(2));
    story.accept(start_login(login(4), None), t0() + seconds(3));
    story.accept(cancel(login(4)), t0() + seconds(4));
    let now = t0() + seconds(40);
    let right = code_now(&secret(), now);
    for (login_id, status) in [
        (login(2), LoginStatus::Approved),
        (login(3), LoginStatus::Denied),
        (login(4), LoginStatus::Cancelled),
    ] {
        for command in [
            submit(login_id, right.clone(), first_secret()),
            approve(login_id, right.clone(), Some(number())),
            deny(login_id),
            cancel(login_id),
        ] {
            story
                .given()
                .when(command, now)
                .then_err(DomainError::LoginNotPending { status });
        }
    }
}

#[test]
fn acting_on_an_unknown_login_is_refused() {
    let story = waiting_for_approval();
    let right = code_now(&secret(), t0());
    for command in [
        submit(login(99), right.clone(), first_secret()),
        approve(login(99), right, Some(number())),
        deny(login(99)),
        cancel(login(99)),
    ] {
        story
            .given()
            .when(command, t0())
            .then_err(DomainError::LoginNotFound);
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------------

#[test]
fn cancelling_a_pending_login_records_a_portal_cancel() {
    let now = t0() + minutes(1);
    let state = waiting_for_approval()
        .given()
        .when(cancel(login(2)), now)
        .then(vec![cancelled(login(2), CancelReason::Portal, now)]);
    assert_eq!(
        state.login(login(2)).unwrap().status,
        LoginStatus::Cancelled
    );
}

#[test]
fn cancelling_an_activation_login_withdraws_its_qr_code() {
    let mut story = awaiting_activation(t0());
    let now = t0() + minutes(1);
    story.accept(cancel(login(1)), now);
    assert_eq!(story.state().pending_enrollment, None);
    story
        .given()
        .when(
            activate(enrollment(1), code_now(&secret(), now), first_secret()),
            now,
        )
        .then_err(DomainError::EnrollmentNotFound);
}

#[test]
fn cancelling_a_login_that_is_no_longer_pending_is_refused() {
    approved_at_t0()
        .given()
        .when(cancel(login(2)), t0() + minutes(1))
        .then_err(DomainError::LoginNotPending {
            status: LoginStatus::Approved,
        });
}

// ---------------------------------------------------------------------------------------------
// Disable (FAQ 4)
// ---------------------------------------------------------------------------------------------

#[test]
fn disabling_records_totp_disabled_and_cancels_pending_logins() {
    let state = recently_approved()
        .given()
        .when(disable(login(2), code_now(&secret(), t0())), t0())
        .then(vec![
            AccountEvent::TotpDisabled {
                enrollment_id: enrollment(1),
                login_id: login(2),
                at: t0(),
            },
            cancelled(login(3), CancelReason::Disabled, t0()),
        ]);
    assert_eq!(state.totp_status, TotpStatus::Disabled);
    assert_eq!(state.device, None);
    assert_eq!(state.pending_logins().count(), 0);
    assert_eq!(
        state.login(login(3)).unwrap().status,
        LoginStatus::Cancelled
    );
}

#[test]
fn disable_needs_an_approved_login() {
    let mut story = recently_approved();
    story.accept(deny(login(3)), t0() - seconds(30));
    story.accept(start_login(login(4), None), t0() - seconds(20));
    let recent = DomainError::RecentLoginRequired { minutes: 10 };
    let right = code_now(&secret(), t0());
    // Pending, denied, unknown: none proves a recent login.
    for login_id in [login(4), login(3), login(99)] {
        story
            .given()
            .when(disable(login_id, right.clone()), t0())
            .then_err(recent.clone());
    }
}

#[test]
fn disable_needs_a_login_approved_within_the_policy_max_age() {
    let story = recently_approved(); // login 2 approved at t0 - 2 min
    let approved_at = t0() - minutes(2);
    let too_late = approved_at + minutes(10) + seconds(1);
    story
        .given()
        .when(disable(login(2), code_now(&secret(), too_late)), too_late)
        .then_err(DomainError::RecentLoginRequired { minutes: 10 });
    let just_in_time = approved_at + minutes(10);
    story
        .given()
        .when(
            disable(login(2), code_now(&secret(), just_in_time)),
            just_in_time,
        )
        .then_events(|events| {
            assert!(
                matches!(events.first(), Some(AccountEvent::TotpDisabled { .. })),
                "{events:?}"
            );
        });
}

#[test]
fn disable_needs_a_fresh_code() {
    let story = recently_approved();
    story
        .given()
        .when(disable(login(2), wrong_code(&secret(), t0())), t0())
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(2),
                Method::Code,
                RejectReason::WrongCode,
                1,
                t0(),
            )],
        );
    // The code that approved the login is spent.
    let approved_at = t0() - minutes(2);
    let now = approved_at + seconds(20);
    story
        .given()
        .when(disable(login(2), code_now(&secret(), approved_at)), now)
        .then_rejected_recording(
            DomainError::CodeAlreadyUsed { attempts_left: 4 },
            vec![rejected(
                login(2),
                Method::Code,
                RejectReason::Replayed,
                1,
                now,
            )],
        );
    // An opened secret is required as for any code.
    story
        .given()
        .when(
            Call::new(Disable {
                login_id: login(2),
                code: code_now(&secret(), t0()),
            })
            .with_secret(None),
            t0(),
        )
        .then_err(DomainError::StalePreparation);
}

#[test]
fn after_disable_the_next_login_asks_for_activation_again() {
    let story = disabled_at_t0();
    let now = t0() + minutes(1);
    assert_eq!(story.state().totp_status, TotpStatus::Disabled);
    story
        .given()
        .when(start_login(login(4), None), now)
        .then_err(DomainError::StalePreparation);
    story
        .given()
        .when(start_login(login(4), Some(enrollment(2))), now)
        .then(vec![
            enrollment_started(enrollment(2), login(4), now),
            login_started(login(4), LoginStage::Activation, now),
        ]);
}

#[test]
fn after_disable_the_old_device_no_longer_approves() {
    let mut story = disabled_at_t0();
    let now = t0() + minutes(1);
    let old_code = code_now(&secret(), now);
    // The login that waited when TOTP was disabled stays cancelled.
    story
        .given()
        .when(submit(login(3), old_code.clone(), first_secret()), now)
        .then_err(DomainError::LoginNotPending {
            status: LoginStatus::Cancelled,
        });
    story
        .given()
        .when(approve(login(3), old_code.clone(), Some(number())), now)
        .then_err(DomainError::DeviceNotRecognised);
    story
        .given()
        .when(disable(login(2), old_code.clone()), now)
        .then_err(DomainError::NotActive);
    // The next login shows a new QR code, which the old secret cannot activate.
    story.accept(start_login(login(4), Some(enrollment(2))), now);
    story
        .given()
        .when(approve(login(4), old_code.clone(), Some(number())), now)
        .then_err(DomainError::DeviceNotRecognised);
    story
        .given()
        .when(
            submit(
                login(4),
                old_code.clone(),
                opened(enrollment(2), new_secret()),
            ),
            now,
        )
        .then_rejected_recording(
            DomainError::InvalidCode { attempts_left: 4 },
            vec![rejected(
                login(4),
                Method::Code,
                RejectReason::WrongCode,
                1,
                now,
            )],
        );
    story
        .given()
        .when(submit(login(4), old_code, first_secret()), now)
        .then_err(DomainError::StalePreparation);
}

// ---------------------------------------------------------------------------------------------
// What the caller looks up before deciding
// ---------------------------------------------------------------------------------------------

#[test]
fn a_code_needs_the_secret_of_the_enrollment_it_is_checked_against() {
    let now = t0() + seconds(5);
    let qr_shown = awaiting_activation(t0()).state();
    let code = code_now(&secret(), now);
    let needs_secret = |state: &Account, call: Call| needs(state, &call.command);
    let secret_of = |id| Needs {
        secret: Some(id),
        enrollment: false,
    };
    assert_eq!(
        needs_secret(&qr_shown, submit(login(1), code.clone(), None)),
        secret_of(enrollment(1))
    );
    assert_eq!(
        needs_secret(&qr_shown, activate(enrollment(1), code.clone(), None)),
        secret_of(enrollment(1))
    );
    // Nothing to open where the command is refused before any code is checked.
    assert_eq!(
        needs_secret(&qr_shown, activate(enrollment(9), code.clone(), None)),
        Needs::default()
    );
    assert_eq!(
        needs_secret(&qr_shown, submit(login(9), code.clone(), None)),
        Needs::default()
    );

    let active = waiting_for_approval().state();
    assert_eq!(
        needs_secret(&active, submit(login(2), code.clone(), None)),
        secret_of(enrollment(1))
    );
    assert_eq!(
        needs_secret(&active, approve(login(2), code.clone(), Some(number()))),
        secret_of(enrollment(1))
    );
    assert_eq!(
        needs_secret(&active, disable(login(2), code.clone())),
        secret_of(enrollment(1))
    );
    assert_eq!(needs_secret(&active, deny(login(2))), Needs::default());
    assert_eq!(needs_secret(&active, cancel(login(2))), Needs::default());
}

#[test]
fn only_a_login_that_will_show_a_qr_code_needs_a_new_enrollment() {
    let start = start_login(login(4), None).command;
    assert!(needs(&Account::default(), &start).enrollment);
    assert!(needs(&awaiting_activation(t0()).state(), &start).enrollment);
    assert!(!needs(&waiting_for_approval().state(), &start).enrollment);
    assert!(needs(&disabled_at_t0().state(), &start).enrollment);
    assert_eq!(needs(&waiting_for_approval().state(), &start).secret, None);
}

// ---------------------------------------------------------------------------------------------
// Bounded state
// ---------------------------------------------------------------------------------------------

#[test]
fn the_state_keeps_at_most_sixteen_decided_logins() {
    let mut story = active_since(t0() - minutes(5));
    let mut state = story.state();
    for n in 0..200u16 {
        let now = t0() + seconds(30 * i64::from(n));
        let login_id = login(100 + u128::from(n));
        for call in [
            start_login(login_id, None),
            approve(login_id, code_now(&secret(), now), Some(number())),
        ] {
            let events = call.decide(&state, now, &story.policy).unwrap();
            state = events.iter().fold(state, |s, e| s.evolve(e));
            story.history.extend(events);
        }
    }
    assert_eq!(state, story.state(), "evolve and a full fold agree");
    assert!(
        state.logins.len() <= 16,
        "{} logins kept",
        state.logins.len()
    );
    assert_eq!(state.logins.iter().filter(|l| !l.is_pending()).count(), 16);
    // The most recent are the ones kept.
    assert!(state.login(login(100 + 199)).is_some());
    assert!(state.login(login(100 + 199 - 15)).is_some());
    assert!(state.login(login(100 + 199 - 16)).is_none());
    assert!(state.login(login(1)).is_none());
}

// Reset, unlock and mail outcomes: their own file, with these fixtures.
mod reset;
