//! Operators' TOTP secrets are in the vault too: a console operator set up before a master key
//! rotation signs in (in a real headless Chromium) while it is half-way, on the instance with the
//! old key, and after it on an instance started with the new key.

use chrono::{Duration, Utc};
use spse_totp_api::config::Config;
use spse_totp_commands::rotation::{Begun, Rotation};
use spse_totp_commands::vault::{KeyRing, MasterKey};
use spse_totp_domain::operator::OperatorRole;
use spse_totp_store::EventMetadata;
use spse_totp_tests::browser::Browser;
use spse_totp_tests::console::{create_operator, set_up, submit_sign_in};
use spse_totp_tests::{test_database_url, TestServer};

fn config(database_url: &str, key: &MasterKey, dir: &std::path::Path) -> Config {
    let mut config = Config {
        database_url: database_url.to_owned(),
        master_key: Some(key.to_base64()),
        master_key_file: dir.join("master.key"),
        ..Config::default()
    };
    config.mail.outbox = dir.join("outbox");
    config
}

#[tokio::test]
async fn an_operator_signs_in_during_and_after_a_master_key_rotation() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let url = test_database_url(data.path()).await;
    let (old, new) = (MasterKey::generate(), MasterKey::generate());

    let first_dir = tempfile::tempdir().unwrap();
    let first_config = config(&url, &old, first_dir.path());
    let s = TestServer::start_in(first_dir, first_config).await;
    let link = create_operator(&s, OperatorRole::Helpdesk, "rina.hd", "Rina Helpdesk").await;
    let phone = set_up(&b, &s, &link, false).await;

    // Half-way: one secret re-sealed, the operator's perhaps not.
    let Begun::Rotation(rotation) = Rotation::begin(
        &s.services.db,
        &KeyRing::single(old.clone()),
        new.clone(),
        EventMetadata::system(),
        Utc::now(),
    )
    .await
    .unwrap() else {
        panic!("the rotation begins");
    };
    rotation.reseal_batch(1).await.unwrap();
    submit_sign_in(&b, &s, "rina.hd", &phone.code_at(s.now())).await;
    assert_eq!(
        b.text_of("#operator")
            .await
            .expect("signed in during the rotation"),
        "Rina Helpdesk"
    );
    rotation.run(100, Utc::now, |_| {}).await.unwrap();
    let last_step = s.now();
    s.stop().await;
    drop(b);

    // After: an instance with the new key only.
    let second_dir = tempfile::tempdir().unwrap();
    let second_config = config(&url, &new, second_dir.path());
    let s = TestServer::start_in(second_dir, second_config).await;
    // Its clock starts where the first one's did: past the steps the operator used there.
    s.advance(last_step - s.now() + Duration::seconds(60));
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    submit_sign_in(&b, &s, "rina.hd", &phone.code_at(s.now())).await;
    assert_eq!(
        b.text_of("#operator")
            .await
            .expect("signed in after the rotation"),
        "Rina Helpdesk"
    );
}
