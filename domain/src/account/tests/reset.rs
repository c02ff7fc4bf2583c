//! Flow 3 and FAQ 5 as rules: who may ask for a reset link, when a link works, what a reset
//! removes, and the helpdesk's unlock.

use super::*;
use crate::ids::ResetRequestId;

fn request(n: u128) -> ResetRequestId {
    ResetRequestId(Uuid::from_u128(0xAE5E_7000 + n))
}

fn ask(n: u128, email: &str) -> RequestReset {
    RequestReset {
        request_id: request(n),
        email: email.to_owned(),
        client_ip: Some(CLIENT_IP.to_owned()),
    }
}

fn confirm(n: u128) -> ConfirmReset {
    ConfirmReset {
        request_id: request(n),
    }
}

fn requested(n: u128, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::ResetRequested {
        request_id: request(n),
        email: EMAIL.to_owned(),
        client_ip: Some(CLIENT_IP.to_owned()),
        expires_at: at + minutes(60),
        at,
    }
}

fn declined(reason: DeclineReason, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::ResetRequestDeclined {
        reason,
        client_ip: Some(CLIENT_IP.to_owned()),
        at,
    }
}

/// Active since `t0() - 5min`, with login 2 waiting for approval; reset link 1 asked at `t0()`.
fn with_link() -> Story {
    let mut story = waiting_for_approval();
    story.accept(ask(1, EMAIL), t0());
    story
}

#[test]
fn a_matching_email_on_an_active_account_records_the_request() {
    active_since(t0() - minutes(5))
        .given()
        .when(ask(1, EMAIL), t0())
        .then(vec![requested(1, t0())]);
}

#[test]
fn emails_match_without_case_or_surrounding_blanks() {
    active_since(t0() - minutes(5))
        .given()
        .when(ask(1, "  PPK1@LPSE.SumselProv.go.id "), t0())
        .then(vec![requested(1, t0())]);
}

#[test]
fn a_pending_activation_can_be_reset_too() {
    awaiting_activation(t0() - minutes(1))
        .given()
        .when(ask(1, EMAIL), t0())
        .then(vec![requested(1, t0())]);
}

#[test]
fn a_wrong_email_is_recorded_as_declined_and_sends_nothing() {
    active_since(t0() - minutes(5))
        .given()
        .when(ask(1, "someone@else.example"), t0())
        .then(vec![declined(DeclineReason::EmailMismatch, t0())]);
}

#[test]
fn an_account_without_totp_has_nothing_to_reset() {
    disabled_at_t0()
        .given()
        .when(ask(1, EMAIL), t0() + minutes(1))
        .then(vec![declined(
            DeclineReason::NothingToReset,
            t0() + minutes(1),
        )]);
}

#[test]
fn an_unknown_account_is_refused_without_any_event() {
    given([])
        .when(ask(1, EMAIL), t0())
        .then_err(DomainError::AccountNotFound);
}

#[test]
fn the_fourth_request_within_an_hour_is_declined_and_the_hour_is_rolling() {
    let mut story = active_since(t0() - minutes(5));
    for n in 1..=3 {
        story.accept(ask(n, EMAIL), t0() + minutes(n as i64));
    }
    story
        .given()
        .when(ask(4, EMAIL), t0() + minutes(30))
        .then(vec![declined(
            DeclineReason::TooManyRequests,
            t0() + minutes(30),
        )]);
    // An hour after the first, one slot is free again.
    story
        .given()
        .when(ask(4, EMAIL), t0() + minutes(61) + seconds(1))
        .then(vec![requested(4, t0() + minutes(61) + seconds(1))]);
}

#[test]
fn the_hourly_limit_comes_from_the_policy() {
    let policy = Policy {
        reset_max_per_hour: 1,
        ..Policy::default()
    };
    let mut story = active_with(policy, t0() - minutes(5));
    story.accept(ask(1, EMAIL), t0());
    story
        .given()
        .when(ask(2, EMAIL), t0() + minutes(1))
        .then(vec![declined(
            DeclineReason::TooManyRequests,
            t0() + minutes(1),
        )]);
}

#[test]
fn confirming_removes_the_binding_and_cancels_pending_logins() {
    let account = with_link()
        .given()
        .when(confirm(1), t0() + minutes(5))
        .then(vec![
            AccountEvent::TotpReset {
                by: ResetBy::Link {
                    request_id: request(1),
                },
                enrollment_id: Some(enrollment(1)),
                pending_enrollment_id: None,
                device_label: Some(DEVICE_LABEL.to_owned()),
                at: t0() + minutes(5),
            },
            cancelled(login(2), CancelReason::Reset, t0() + minutes(5)),
        ]);
    assert_eq!(account.totp_status, TotpStatus::Inactive);
    assert!(account.device.is_none());
    assert!(
        needs(&account, &start_login(login(3), None).command).enrollment,
        "the next login asks for activation"
    );
}

#[test]
fn after_a_reset_the_old_device_cannot_approve() {
    let mut story = with_link();
    story.accept(confirm(1), t0() + minutes(1));
    story.accept(
        start_login(login(3), Some(enrollment(2))),
        t0() + minutes(2),
    );
    story
        .given()
        .when(
            approve(
                login(2),
                code_now(&secret(), t0() + minutes(2)),
                Some(number()),
            ),
            t0() + minutes(2),
        )
        .then_err(DomainError::DeviceNotRecognised);
}

#[test]
fn a_link_works_once() {
    let mut story = with_link();
    story.accept(confirm(1), t0() + minutes(1));
    story
        .given()
        .when(confirm(1), t0() + minutes(2))
        .then_err(DomainError::ResetLinkUsed);
}

#[test]
fn a_link_expires_after_the_policy_ttl() {
    let story = with_link();
    story
        .given()
        .when(confirm(1), t0() + minutes(60))
        .then_err(DomainError::ResetLinkExpired);
    let policy = Policy {
        reset_ttl: minutes(5),
        ..Policy::default()
    };
    story
        .given()
        .with_policy(policy)
        .when(confirm(1), t0() + minutes(4))
        .then_events(|events| assert!(matches!(events[0], AccountEvent::TotpReset { .. })));
}

#[test]
fn a_newer_request_supersedes_the_older_link() {
    let mut story = with_link();
    story.accept(ask(2, EMAIL), t0() + minutes(1));
    story
        .given()
        .when(confirm(1), t0() + minutes(2))
        .then_err(DomainError::ResetLinkSuperseded);
    story
        .given()
        .when(confirm(2), t0() + minutes(2))
        .then_events(|events| assert!(matches!(events[0], AccountEvent::TotpReset { .. })));
}

#[test]
fn an_activation_supersedes_a_pending_link() {
    let mut story = awaiting_activation(t0());
    story.accept(ask(1, EMAIL), t0());
    story.accept(
        activate(enrollment(1), code_now(&secret(), t0()), first_secret()),
        t0() + seconds(5),
    );
    story
        .given()
        .when(confirm(1), t0() + minutes(1))
        .then_err(DomainError::ResetLinkSuperseded);
}

#[test]
fn a_helpdesk_reset_supersedes_a_pending_link() {
    let mut story = with_link();
    story.accept(
        HelpdeskReset {
            reason: "user lost phone".to_owned(),
            ticket: "HD-1".to_owned(),
        },
        t0() + minutes(1),
    );
    story
        .given()
        .when(confirm(1), t0() + minutes(2))
        .then_err(DomainError::ResetLinkSuperseded);
}

#[test]
fn a_link_of_another_account_is_unknown_here() {
    with_link()
        .given()
        .when(confirm(9), t0())
        .then_err(DomainError::ResetLinkUnknown);
}

#[test]
fn the_helpdesk_resets_with_reason_and_ticket_recorded() {
    let account = waiting_for_approval()
        .given()
        .when(
            HelpdeskReset {
                reason: " lost phone ".to_owned(),
                ticket: "HD-42".to_owned(),
            },
            t0(),
        )
        .then(vec![
            AccountEvent::TotpReset {
                by: ResetBy::Helpdesk {
                    reason: "lost phone".to_owned(),
                    ticket: "HD-42".to_owned(),
                },
                enrollment_id: Some(enrollment(1)),
                pending_enrollment_id: None,
                device_label: Some(DEVICE_LABEL.to_owned()),
                at: t0(),
            },
            cancelled(login(2), CancelReason::Reset, t0()),
        ]);
    assert_eq!(account.totp_status, TotpStatus::Inactive);
}

#[test]
fn the_helpdesk_must_give_reason_and_ticket() {
    let story = waiting_for_approval();
    let reset = |reason: &str, ticket: &str| HelpdeskReset {
        reason: reason.to_owned(),
        ticket: ticket.to_owned(),
    };
    story
        .given()
        .when(reset("", "HD-1"), t0())
        .then_err(DomainError::Required("reason"));
    story
        .given()
        .when(reset("lost phone", "  "), t0())
        .then_err(DomainError::Required("ticket"));
}

#[test]
fn a_helpdesk_reset_of_an_inactive_account_is_refused() {
    disabled_at_t0()
        .given()
        .when(
            HelpdeskReset {
                reason: "r".to_owned(),
                ticket: "t".to_owned(),
            },
            t0() + minutes(1),
        )
        .then_err(DomainError::NotActive);
}

#[test]
fn unlock_clears_the_lock_and_the_failure_count() {
    let mut story = waiting_for_approval();
    story.lock(login(2), t0());
    let account = story
        .given()
        .when(
            Unlock {
                reason: "verified by phone".to_owned(),
            },
            t0() + minutes(1),
        )
        .then(vec![AccountEvent::AccountUnlocked {
            reason: "verified by phone".to_owned(),
            at: t0() + minutes(1),
        }]);
    assert_eq!(account.lockout, Lockout::default());
    assert!(account.lockout.locked_at(t0() + minutes(1)).is_none());
}

#[test]
fn unlock_clears_failures_short_of_a_lock() {
    let mut story = waiting_for_approval();
    story.fail(login(2), 2, t0());
    let account = story
        .given()
        .when(
            Unlock {
                reason: "r".to_owned(),
            },
            t0(),
        )
        .then_events(|events| assert_eq!(events.len(), 1));
    assert_eq!(account.lockout.failed_attempts, 0);
}

#[test]
fn unlocking_an_unlocked_account_is_refused() {
    waiting_for_approval()
        .given()
        .when(
            Unlock {
                reason: "r".to_owned(),
            },
            t0(),
        )
        .then_err(DomainError::NotLocked);
}

#[test]
fn mail_outcomes_are_recorded_as_reported() {
    with_link()
        .given()
        .when(
            RecordResetEmail {
                request_id: request(1),
                outcome: MailOutcome::Failed {
                    attempt: 1,
                    error: "connection refused".to_owned(),
                    retry_at: Some(t0() + seconds(2)),
                },
            },
            t0(),
        )
        .then(vec![AccountEvent::ResetEmailFailed {
            request_id: request(1),
            attempt: 1,
            error: "connection refused".to_owned(),
            retry_at: Some(t0() + seconds(2)),
            at: t0(),
        }]);
}

#[test]
fn reset_events_round_trip_through_their_stored_form() {
    let event = AccountEvent::TotpReset {
        by: ResetBy::Helpdesk {
            reason: "lost".to_owned(),
            ticket: "HD-1".to_owned(),
        },
        enrollment_id: Some(enrollment(1)),
        pending_enrollment_id: None,
        device_label: None,
        at: t0(),
    };
    let back = AccountEvent::from_stored(event.event_type(), 1, event.to_payload()).unwrap();
    assert_eq!(back, event);
}
