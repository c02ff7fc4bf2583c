//! An account service decides on the state it keeps in memory and lets the append's expected
//! version prove that state current. These tests run two services on one database, as two
//! processes would be, each with its own memory, and check that whatever one records, the
//! other enforces: a used code stays used, a reset device stays reset, a login started on one is
//! found by the other, and the failure count stays exact.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use spse_totp_commands::accounts::{AccountService, CommandError, ServiceSettings};
use spse_totp_commands::snapshots::SnapshotStore;
use spse_totp_commands::tokens::sha256_hex;
use spse_totp_commands::vault::{MasterKey, Vault};
use spse_totp_commands::{Clock, ManualClock};
use spse_totp_domain::account::{ApproveOnDevice, Disable, HelpdeskReset};
use spse_totp_domain::totp::{code_for_step, step_at, TotpSecret};
use spse_totp_domain::{
    AccountCommand, AccountKey, DeviceId, DomainError, LoginId, TotpCode, UserId, UserType,
};
use spse_totp_store::{Database, EventMetadata};

struct Setup {
    db: Database,
    clock: Arc<ManualClock>,
    first: AccountService,
    second: AccountService,
    key: AccountKey,
    _dir: tempfile::TempDir,
}

fn service(db: &Database, master: &MasterKey, clock: &Arc<ManualClock>) -> AccountService {
    AccountService::new(
        Arc::clone(&db.events),
        Vault::new(db, master),
        SnapshotStore::new(db),
        Arc::clone(clock) as _,
        ServiceSettings::default(),
    )
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let master = MasterKey::generate();
    let clock = Arc::new(ManualClock::starting_at(
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 10).unwrap(),
    ));
    Setup {
        first: service(&db, &master, &clock),
        second: service(&db, &master, &clock),
        db,
        clock,
        key: AccountKey::new(UserType::Penyedia, UserId::parse("vendor-1").unwrap()),
        _dir: dir,
    }
}

/// The user's phone after activation: its secret and its device token.
struct Phone {
    secret: TotpSecret,
    token: String,
}

impl Phone {
    fn code(&self, s: &Setup) -> TotpCode {
        TotpCode::parse(&code_for_step(&self.secret, step_at(s.clock.now()))).unwrap()
    }
}

/// Activates a device on `s.key` through `service`, by scanning the QR code it hands out.
async fn activate(s: &Setup, service: &AccountService) -> Phone {
    let started = service
        .start_login(&s.key, None, None, None, None, EventMetadata::system())
        .await
        .unwrap();
    let activation = started.activation.expect("a QR code");
    let uri = url_param(&activation.otpauth_uri, "secret");
    let secret = TotpSecret::from_bytes(totp_rs::Secret::Encoded(uri).to_bytes().unwrap());
    let code = TotpCode::parse(&code_for_step(&secret, step_at(s.clock.now()))).unwrap();
    let activated = service
        .activate_device(
            activation.enrollment_id,
            DeviceId::generate(),
            code,
            "phone".to_owned(),
            None,
            EventMetadata::system(),
        )
        .await
        .unwrap();
    // The next code must come from a later step: the activation used this one.
    s.clock.advance(Duration::seconds(30));
    Phone {
        secret,
        token: activated.device_token,
    }
}

fn url_param(uri: &str, name: &str) -> String {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

async fn start(s: &Setup, service: &AccountService) -> (LoginId, u8) {
    let started = service
        .start_login(&s.key, None, None, None, None, EventMetadata::system())
        .await
        .unwrap();
    let number = started.approval_number.expect("number matching is on");
    (started.login_id, number.value())
}

async fn approve(
    s: &Setup,
    service: &AccountService,
    phone: &Phone,
    (login_id, number): (LoginId, u8),
    code: TotpCode,
) -> Result<(), CommandError> {
    let command = AccountCommand::ApproveOnDevice(ApproveOnDevice {
        login_id,
        device_token_sha256: sha256_hex(&phone.token),
        code,
        number: Some(spse_totp_domain::ApprovalNumber::new(number).unwrap()),
    });
    service
        .execute(&s.key, command, EventMetadata::system())
        .await
        .map(|_| ())
}

async fn count(s: &Setup, event_type: &str) -> usize {
    s.db.events
        .read_stream(&s.key.stream_name(), 1, usize::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

#[tokio::test]
async fn a_login_started_through_one_service_is_approved_through_the_other() {
    let s = setup().await;
    let phone = activate(&s, &s.first).await;
    // The second service has the account in memory, from before the login started.
    s.second.load(&s.key).await.unwrap();

    let login = start(&s, &s.first).await;
    approve(&s, &s.second, &phone, login, phone.code(&s))
        .await
        .expect("the second service reads the stream before refusing an unknown login");
    assert_eq!(count(&s, "LoginApproved").await, 2);
}

#[tokio::test]
async fn a_code_used_through_one_service_is_a_replay_through_the_other() {
    let s = setup().await;
    let phone = activate(&s, &s.first).await;
    let earlier = start(&s, &s.first).await;
    let later = start(&s, &s.first).await;
    // Both services know both logins and the device, and have opened its secret before.
    s.second.load(&s.key).await.unwrap();

    let code = phone.code(&s);
    approve(&s, &s.first, &phone, earlier, code.clone())
        .await
        .unwrap();
    // The second service's memory has not seen that approval: the same code must still fail.
    let replay = approve(&s, &s.second, &phone, later, code).await;
    assert!(
        matches!(
            replay,
            Err(CommandError::Rejected {
                error: DomainError::CodeAlreadyUsed { .. },
                ..
            })
        ),
        "{replay:?}"
    );
    assert_eq!(
        count(&s, "LoginApproved").await,
        2,
        "activation and one approval"
    );
    assert_eq!(
        count(&s, "CodeRejected").await,
        1,
        "the replay is recorded once"
    );
}

#[tokio::test]
async fn a_reset_through_one_service_stops_the_old_device_on_the_other() {
    let s = setup().await;
    let phone = activate(&s, &s.first).await;
    // The second service approves once, so it holds the device and its sealed secret.
    let login = start(&s, &s.second).await;
    approve(&s, &s.second, &phone, login, phone.code(&s))
        .await
        .unwrap();
    let pending = start(&s, &s.second).await;
    s.clock.advance(Duration::seconds(30));

    let reset = AccountCommand::HelpdeskReset(HelpdeskReset {
        reason: "lost phone".to_owned(),
        ticket: "T-1".to_owned(),
    });
    s.first
        .execute(&s.key, reset, EventMetadata::system())
        .await
        .unwrap();

    // A valid code from the old phone, through the service whose memory predates the reset.
    let refused = approve(&s, &s.second, &phone, pending, phone.code(&s)).await;
    assert!(refused.is_err(), "the reset device approved a login");
    assert_eq!(
        count(&s, "LoginApproved").await,
        2,
        "activation and the approval before the reset"
    );
}

#[tokio::test]
async fn wrong_codes_alternating_between_services_lock_at_exactly_the_limit() {
    let s = setup().await;
    let phone = activate(&s, &s.first).await;
    let login = start(&s, &s.first).await;
    s.second.load(&s.key).await.unwrap();
    let right = code_for_step(&phone.secret, step_at(s.clock.now()));
    let wrong = TotpCode::parse(&format!(
        "{:06}",
        (right.parse::<u32>().unwrap() + 500_000) % 1_000_000
    ))
    .unwrap();

    let mut answers = Vec::new();
    for round in 0..7 {
        let service = if round % 2 == 0 { &s.first } else { &s.second };
        answers.push(
            match approve(&s, service, &phone, login, wrong.clone()).await {
                Err(CommandError::Rejected { error, .. }) => error,
                other => panic!("a wrong code answered {other:?}"),
            },
        );
    }
    let left: Vec<_> = answers
        .iter()
        .filter_map(|e| match e {
            DomainError::InvalidCode { attempts_left } => Some(*attempts_left),
            _ => None,
        })
        .collect();
    assert_eq!(left, vec![4, 3, 2, 1], "{answers:?}");
    assert!(
        answers[4..]
            .iter()
            .all(|e| matches!(e, DomainError::AccountLocked { .. })),
        "{answers:?}"
    );
    assert_eq!(count(&s, "CodeRejected").await, 5);
    assert_eq!(count(&s, "AccountLocked").await, 1);
}

#[tokio::test]
async fn a_secret_destroyed_by_another_service_is_not_a_server_error() {
    let s = setup().await;
    let phone = activate(&s, &s.first).await;
    let login = start(&s, &s.first).await;
    // The first service disables TOTP on a recent login; the second has never opened the secret,
    // so its first look in the vault finds the row gone.
    approve(&s, &s.first, &phone, login, phone.code(&s))
        .await
        .unwrap();
    s.second.load(&s.key).await.unwrap();
    let pending = start(&s, &s.first).await;
    s.clock.advance(Duration::seconds(30));
    let disable = AccountCommand::Disable(Disable {
        login_id: login.0,
        code: phone.code(&s),
    });
    s.first
        .execute(&s.key, disable, EventMetadata::system())
        .await
        .unwrap();
    s.clock.advance(Duration::seconds(30));

    let refused = approve(&s, &s.second, &phone, pending, phone.code(&s)).await;
    assert!(
        matches!(refused, Err(CommandError::Rejected { .. })),
        "a refusal the API maps to 4xx, not a missing secret: {refused:?}"
    );
}
