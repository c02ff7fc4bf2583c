//! Given events, when a command, then events or a refusal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::account::OpenedSecret;
use crate::code::TotpCode;
use crate::ids::EnrollmentId;
use crate::policy::Policy;
use crate::totp::{code_for_step, step_at, TotpSecret};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 10)
        .single()
        .unwrap_or_default()
}

fn setup_id() -> Uuid {
    Uuid::from_u128(1)
}

fn enrollment() -> EnrollmentId {
    EnrollmentId(Uuid::from_u128(2))
}

fn opened() -> OpenedSecret {
    OpenedSecret {
        enrollment_id: enrollment(),
        secret: TotpSecret::from_bytes(vec![9; 20]),
    }
}

fn code_at(now: DateTime<Utc>) -> TotpCode {
    TotpCode::parse(&code_for_step(&opened().secret, step_at(now))).unwrap()
}

fn run(
    given: &[OperatorEvent],
    command: OperatorCommand,
    now: DateTime<Utc>,
    password_matches: bool,
) -> Result<Vec<OperatorEvent>, OperatorRejection> {
    let policy = Policy::default();
    let secret = opened();
    decide(
        &Operator::from_events(given),
        &command,
        OperatorContext {
            now,
            policy: &policy,
            secret: Some(&secret),
            password_matches,
        },
    )
}

fn created() -> Vec<OperatorEvent> {
    run(
        &[],
        OperatorCommand::Create {
            username: Username::parse("Siti.Helpdesk").unwrap(),
            name: "Siti".into(),
            email: "siti@lpse.example".into(),
            role: OperatorRole::Helpdesk,
            setup_id: setup_id(),
        },
        t0(),
        false,
    )
    .unwrap()
}

fn active() -> Vec<OperatorEvent> {
    let mut events = created();
    for command in [
        OperatorCommand::SetPassword {
            setup_id: setup_id(),
            password_chars: 16,
        },
        OperatorCommand::StartEnrollment {
            setup_id: setup_id(),
            enrollment_id: enrollment(),
        },
        OperatorCommand::ActivateTotp {
            setup_id: setup_id(),
            code: code_at(t0()),
        },
    ] {
        let more = run(&events, command, t0(), false).unwrap();
        events.extend(more);
    }
    events
}

#[test]
fn the_setup_link_activates_once_and_then_the_operator_signs_in() {
    let events = active();
    let op = Operator::from_events(&events);
    assert_eq!(op.status, OperatorStatus::Active);
    assert_eq!(op.username.unwrap().as_str(), "siti.helpdesk");
    // Used up: the link does nothing more.
    let again = run(
        &events,
        OperatorCommand::SetPassword {
            setup_id: setup_id(),
            password_chars: 20,
        },
        t0(),
        false,
    );
    assert_eq!(again.unwrap_err().error, OperatorError::SetupLinkUnknown);
    let later = t0() + Duration::seconds(30);
    let signed_in = run(
        &events,
        OperatorCommand::SignIn {
            code: code_at(later),
        },
        later,
        true,
    )
    .unwrap();
    assert!(matches!(
        signed_in[..],
        [OperatorEvent::OperatorSignedIn { .. }]
    ));
}

#[test]
fn a_short_password_and_an_old_link_are_refused() {
    let events = created();
    let short = run(
        &events,
        OperatorCommand::SetPassword {
            setup_id: setup_id(),
            password_chars: 11,
        },
        t0(),
        false,
    );
    assert_eq!(
        short.unwrap_err().error,
        OperatorError::PasswordTooShort(12)
    );
    let late = run(
        &events,
        OperatorCommand::SetPassword {
            setup_id: setup_id(),
            password_chars: 12,
        },
        t0() + Duration::hours(24),
        false,
    );
    assert_eq!(late.unwrap_err().error, OperatorError::SetupLinkExpired);
}

#[test]
fn a_used_code_is_not_accepted_again() {
    let events = active();
    // The activation used this step.
    let replay = run(
        &events,
        OperatorCommand::SignIn {
            code: code_at(t0()),
        },
        t0() + Duration::seconds(5),
        true,
    )
    .unwrap_err();
    assert!(matches!(
        replay.record[..],
        [OperatorEvent::OperatorSignInFailed {
            reason: SignInFailure::ReplayedCode,
            failed_attempts: 1,
            ..
        }]
    ));
}

#[test]
fn wrong_passwords_lock_by_the_users_rules() {
    let mut events = active();
    let later = t0() + Duration::seconds(60);
    for attempt in 1..=5u32 {
        let refused = run(
            &events,
            OperatorCommand::SignIn {
                code: code_at(later),
            },
            later,
            false,
        )
        .unwrap_err();
        if attempt < 5 {
            assert_eq!(
                refused.error,
                OperatorError::SignInRefused {
                    attempts_left: 5 - attempt
                }
            );
        } else {
            assert_eq!(
                refused.error,
                OperatorError::Locked {
                    until: later + Duration::minutes(15)
                }
            );
        }
        events.extend(refused.record);
    }
    // Locked: even the right password and code wait.
    let locked = run(
        &events,
        OperatorCommand::SignIn {
            code: code_at(later),
        },
        later,
        true,
    )
    .unwrap_err();
    assert!(matches!(locked.error, OperatorError::Locked { .. }));
    assert!(locked.record.is_empty());
}

#[test]
fn a_disabled_operator_cannot_sign_in_and_a_reset_needs_a_new_activation() {
    let events = active();
    let mut reset = events.clone();
    reset.extend(
        run(
            &events,
            OperatorCommand::ResetTotp {
                setup_id: Uuid::from_u128(3),
            },
            t0(),
            false,
        )
        .unwrap(),
    );
    let op = Operator::from_events(&reset);
    assert_eq!(op.status, OperatorStatus::Pending);
    assert!(op.enrollment_id.is_none());
    let later = t0() + Duration::seconds(60);
    let refused = run(
        &reset,
        OperatorCommand::SignIn {
            code: code_at(later),
        },
        later,
        true,
    );
    assert_eq!(refused.unwrap_err().error, OperatorError::NotActive);

    let mut disabled = events.clone();
    disabled.extend(run(&events, OperatorCommand::Disable, t0(), false).unwrap());
    let refused = run(
        &disabled,
        OperatorCommand::SignIn {
            code: code_at(later),
        },
        later,
        true,
    );
    assert_eq!(refused.unwrap_err().error, OperatorError::Disabled);
}

fn bound_on_device() -> Vec<OperatorEvent> {
    let mut events = created();
    for command in [
        OperatorCommand::SetPassword {
            setup_id: setup_id(),
            password_chars: 16,
        },
        OperatorCommand::StartEnrollment {
            setup_id: setup_id(),
            enrollment_id: enrollment(),
        },
        OperatorCommand::BindDevice {
            enrollment_id: enrollment(),
            code: code_at(t0()),
            device_id: Uuid::from_u128(7),
            label: "Pixel".into(),
            platform: None,
            device_token_sha256: "token-hash".into(),
        },
    ] {
        let more = run(&events, command, t0(), false).unwrap();
        events.extend(more);
    }
    events
}

fn sign_in_id() -> Uuid {
    Uuid::from_u128(9)
}

fn number() -> crate::code::ApprovalNumber {
    crate::code::ApprovalNumber::new(42).unwrap()
}

fn started(events: &[OperatorEvent], now: DateTime<Utc>) -> Vec<OperatorEvent> {
    let mut events = events.to_vec();
    let more = run(
        &events,
        OperatorCommand::StartDeviceSignIn {
            sign_in_id: sign_in_id(),
            number: number(),
            browser_sha256: "browser".into(),
        },
        now,
        true,
    )
    .unwrap();
    events.extend(more);
    events
}

#[test]
fn a_device_binds_at_setup_and_an_approval_becomes_one_sign_in() {
    let events = bound_on_device();
    let op = Operator::from_events(&events);
    assert_eq!(op.status, OperatorStatus::Active);
    assert_eq!(op.device.as_ref().unwrap().label, "Pixel");
    let later = t0() + Duration::seconds(30);
    let mut events = started(&events, later);
    // Not approved yet: the browser keeps waiting; a stranger's browser is not this one.
    let finish = |events: &[OperatorEvent], browser: &str| {
        run(
            events,
            OperatorCommand::FinishDeviceSignIn {
                sign_in_id: sign_in_id(),
                browser_sha256: browser.into(),
            },
            later,
            false,
        )
    };
    assert_eq!(
        finish(&events, "browser").unwrap_err().error,
        OperatorError::SignInWaiting
    );
    let approve = |events: &[OperatorEvent], token: &str| {
        run(
            events,
            OperatorCommand::ApproveOnDevice {
                sign_in_id: sign_in_id(),
                device_token_sha256: token.into(),
                code: code_at(later),
                number: Some(number()),
            },
            later,
            false,
        )
    };
    assert_eq!(
        approve(&events, "another-device").unwrap_err().error,
        OperatorError::WrongDevice
    );
    events.extend(approve(&events, "token-hash").unwrap());
    assert_eq!(
        finish(&events, "elsewhere").unwrap_err().error,
        OperatorError::SignInUnknown
    );
    let signed_in = finish(&events, "browser").unwrap();
    assert!(matches!(
        signed_in[..],
        [OperatorEvent::OperatorSignedIn {
            sign_in_id: Some(_),
            ..
        }]
    ));
    events.extend(signed_in);
    // Used: the same approval does not sign in twice.
    assert_eq!(
        finish(&events, "browser").unwrap_err().error,
        OperatorError::SignInUnknown
    );
}

#[test]
fn a_denial_counts_toward_the_lock_and_an_unanswered_sign_in_expires() {
    let mut events = bound_on_device();
    let later = t0() + Duration::seconds(30);
    for attempt in 1..=5u32 {
        events = started(&events, later);
        let denied = run(
            &events,
            OperatorCommand::DenyOnDevice {
                sign_in_id: sign_in_id(),
                device_token_sha256: "token-hash".into(),
            },
            later,
            false,
        )
        .unwrap_err();
        assert!(matches!(
            denied.record[..2],
            [
                OperatorEvent::OperatorSignInDenied { .. },
                OperatorEvent::OperatorSignInFailed {
                    reason: SignInFailure::DeniedOnDevice,
                    ..
                }
            ]
        ));
        if attempt == 5 {
            assert!(matches!(denied.error, OperatorError::Locked { .. }));
        }
        events.extend(denied.record);
    }
    let op = Operator::from_events(&events);
    assert!(op.lockout.locked_at(later).is_some());

    let events = started(&bound_on_device(), later);
    let too_late = later + Policy::default().login_ttl;
    let expired = run(
        &events,
        OperatorCommand::FinishDeviceSignIn {
            sign_in_id: sign_in_id(),
            browser_sha256: "browser".into(),
        },
        too_late,
        false,
    )
    .unwrap_err();
    assert_eq!(expired.error, OperatorError::SignInExpired);
    assert!(matches!(
        expired.record[..],
        [OperatorEvent::OperatorSignInExpired { .. }]
    ));
}

#[test]
fn the_sweep_records_a_sign_in_nobody_finished_once_its_time_is_over() {
    let now = Utc::now();
    let events = started(&bound_on_device(), now);
    let expire = OperatorCommand::ExpireDeviceSignIn {
        sign_in_id: sign_in_id(),
    };
    let early = run(&events, expire.clone(), now + Duration::minutes(1), false).unwrap_err();
    assert_eq!(early.error, OperatorError::SignInWaiting);
    assert!(early.record.is_empty(), "a waiting sign-in is left alone");

    let too_late = now + Policy::default().login_ttl;
    let expired = run(&events, expire.clone(), too_late, false).unwrap();
    assert!(matches!(
        expired[..],
        [OperatorEvent::OperatorSignInExpired { at, .. }] if at == too_late
    ));
    // Recorded once: afterwards the sign-in is gone, and a second sweep finds nothing.
    let mut after = events.clone();
    after.extend(expired);
    assert!(Operator::from_events(&after).sign_in.is_none());
    let again = run(&after, expire, too_late, false).unwrap_err();
    assert_eq!(again.error, OperatorError::SignInUnknown);
}

#[test]
fn a_reset_unbinds_the_device() {
    let events = bound_on_device();
    let mut reset = events.clone();
    reset.extend(
        run(
            &events,
            OperatorCommand::ResetTotp {
                setup_id: Uuid::from_u128(3),
            },
            t0(),
            false,
        )
        .unwrap(),
    );
    assert!(Operator::from_events(&reset).device.is_none());
}
