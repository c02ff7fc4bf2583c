//! API keys' lifecycle over the real HTTP server (issue 13): an expiring key works until its
//! expiry and is refused from then on; a revoked key is refused on every instance within 2
//! seconds (two servers on one PostgreSQL); "last used" is written at most once a minute per key
//! and survives a projection rebuild.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_commands::apikeys;
use spse_totp_commands::vault::MasterKey;
use spse_totp_domain::apikey::{self, Role};
use spse_totp_projections::api_keys;
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use spse_totp_tests::TestServer;
use uuid::Uuid;

/// Starts a login with `key`, asking for English messages: the tests read why a key is refused.
async fn start_login(s: &TestServer, key: &str, user_id: &str) -> (StatusCode, Value) {
    s.post_in_english(
        "/v1/logins",
        key,
        json!({"user_type": "penyedia", "user_id": user_id}),
    )
    .await
}

async fn listing(s: &TestServer, key_id: Uuid) -> api_keys::ApiKeyListing {
    api_keys::list(&s.services.db.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.key_id == key_id)
        .expect("the key is listed")
}

#[tokio::test]
async fn an_expiring_key_works_until_its_expiry_then_answers_401() {
    let s = TestServer::start().await;
    let expires_at = apikey::expiry(s.now(), 1).unwrap();
    let created = apikeys::create_expiring_as(
        s.services.db.events.as_ref(),
        "portal-for-a-day",
        Role::Portal,
        Some(expires_at),
        apikeys::operator_metadata("test"),
        s.now(),
    )
    .await
    .unwrap();
    s.services.caught_up(Some(created.position)).await;
    assert_eq!(
        listing(&s, created.key_id).await.expires_at,
        Some(expires_at)
    );

    let (status, body) = start_login(&s, &created.key, "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.advance(Duration::days(1) - Duration::seconds(1));
    let (status, body) = start_login(&s, &created.key, "vendor2").await;
    assert_eq!(status, StatusCode::CREATED, "a second before: {body}");

    // At its expiry, at once: the key is in this instance's cache, and still refused.
    s.advance(Duration::seconds(1));
    let (status, body) = start_login(&s, &created.key, "vendor3").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", body["status"]);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // Keys without an expiry go on working.
    let (status, body) = start_login(&s, &s.portal_key, "vendor4").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute_per_key_and_survives_a_rebuild() {
    let s = TestServer::start().await;
    let portal = listing_by_name(&s, "test-portal").await;
    assert_eq!(portal.last_used_at, None, "not used yet");

    let first_use = s.now();
    start_login(&s, &s.portal_key, "vendor1").await;
    assert_eq!(
        listing(&s, portal.key_id).await.last_used_at,
        Some(first_use)
    );

    // Within the minute the row is not written again.
    s.advance(Duration::seconds(59));
    start_login(&s, &s.portal_key, "vendor2").await;
    assert_eq!(
        listing(&s, portal.key_id).await.last_used_at,
        Some(first_use)
    );

    // After it, the next use is.
    s.advance(Duration::seconds(1));
    let later: DateTime<Utc> = s.now();
    start_login(&s, &s.portal_key, "vendor3").await;
    assert_eq!(listing(&s, portal.key_id).await.last_used_at, Some(later));

    // A rebuild of the projections keeps it: no event records a use.
    s.services.projections.rebuild().await.unwrap();
    assert_eq!(listing(&s, portal.key_id).await.last_used_at, Some(later));
}

async fn listing_by_name(s: &TestServer, name: &str) -> api_keys::ApiKeyListing {
    api_keys::list(&s.services.db.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == name)
        .expect("the key is listed")
}

/// Calls `key` on `s` until it is refused, for at most `within`; returns how long that took.
async fn refused_within(s: &TestServer, key: &str, within: StdDuration) -> StdDuration {
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let (status, body) = start_login(s, key, &format!("poll{n}")).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("revoked"),
                "{body}"
            );
            return started.elapsed();
        }
        assert_eq!(status, StatusCode::CREATED, "{}", body["error"]);
        assert!(
            started.elapsed() < within,
            "{} still accepts the revoked key after {:?}",
            s.base,
            started.elapsed()
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_instance_is_refused_on_the_other_within_two_seconds() {
    let test = "a_key_revoked_on_one_instance_is_refused_on_the_other_within_two_seconds";
    let Some(url) = fresh_postgres_url().await.expect("a fresh test schema") else {
        return skipped(test);
    };
    let master_key = MasterKey::generate().to_base64();
    let shared = |config: &mut spse_totp_api::Config| {
        config.database_url = url.clone();
        config.master_key = Some(master_key.clone());
    };
    // Started first, so it holds the projection lease: the second instance's write reaches the
    // key table only through the first one's follower (LISTEN/NOTIFY).
    let first = TestServer::start_with(shared).await;
    let second = TestServer::start_with(shared).await;

    let created = apikeys::create(
        first.services.db.events.as_ref(),
        "portal-shared",
        Role::Portal,
        "test",
        first.now(),
    )
    .await
    .unwrap();
    first.services.caught_up(Some(created.position)).await;
    // Both instances know the key (and hold it in their caches).
    for s in [&first, &second] {
        let (status, body) = start_login(s, &created.key, "warm").await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", s.base);
    }

    // Revoked on the second instance, as its console does.
    apikeys::revoke(
        second.services.db.events.as_ref(),
        created.key_id,
        "test",
        second.now(),
    )
    .await
    .unwrap();
    let limit = StdDuration::from_secs(2);
    let on_first = refused_within(&first, &created.key, limit).await;
    let on_second = refused_within(&second, &created.key, limit).await;
    eprintln!(
        "revoked key refused after {on_first:?} on the other instance, {on_second:?} on its own"
    );
    // Every other key still works on both.
    for s in [&first, &second] {
        let (status, body) = start_login(s, &s.portal_key, "still").await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", s.base);
    }
}
