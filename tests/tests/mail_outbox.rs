//! Mail without head-of-line blocking (issue 14, item 4): one recipient whose server answers 451
//! for ever delays nobody else, is retried with a doubling delay, and is given up at its
//! deadline, each attempt an event in the account's stream.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use spse_totp_domain::AccountEvent;
use spse_totp_tests::resets::{email_of, server_with_sink, wait_for_links};
use spse_totp_tests::smtp_sink::SmtpSink;
use spse_totp_tests::TestServer;

/// Every `ResetEmailFailed` of the account: (attempt, retry_at, at).
async fn failures(
    s: &TestServer,
    user_id: &str,
) -> Vec<(u32, Option<DateTime<Utc>>, DateTime<Utc>)> {
    let stream = format!("account-non_penyedia-{}", user_id.to_ascii_uppercase());
    s.services
        .db
        .events
        .read_stream(&stream, 1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            match AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload).ok()? {
                AccountEvent::ResetEmailFailed {
                    attempt,
                    retry_at,
                    at,
                    ..
                } => Some((attempt, retry_at, at)),
                _ => None,
            }
        })
        .collect()
}

/// Waits (real time) until the account has `count` failures recorded.
async fn wait_for_failures(
    s: &TestServer,
    user_id: &str,
    count: usize,
) -> Vec<(u32, Option<DateTime<Utc>>, DateTime<Utc>)> {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let found = failures(s, user_id).await;
        if found.len() >= count || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_answers_451_for_ever_delays_nobody_and_is_given_up_at_its_deadline() {
    let sink = SmtpSink::start().await;
    let s = server_with_sink(&sink).await;
    let stuck = "ppk_stuck";
    let others: Vec<String> = (0..100).map(|i| format!("ppk_ok{i:03}")).collect();
    s.activate_with_email("non_penyedia", stuck).await;
    for user in &others {
        s.activate_with_email("non_penyedia", user).await;
    }
    s.settle_mail().await;
    sink.refuse(&email_of(stuck));

    // The refused recipient asks first: under a dispatcher that waits at the first message to
    // retry, every link after it would wait for the test clock, which does not move here.
    let ip = |i: usize| format!("198.51.{}.{}", i / 200, i % 200 + 1);
    let (status, _) = s
        .request_reset("non_penyedia", stuck, &email_of(stuck), &ip(1000))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let first = wait_for_failures(&s, stuck, 1).await;
    assert_eq!(first.len(), 1, "the first attempt is refused and recorded");
    let started = Instant::now();
    for (i, user) in others.iter().enumerate() {
        let (status, _) = s
            .request_reset("non_penyedia", user, &email_of(user), &ip(i))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let links = wait_for_links(&sink, 100).await;
    let took = started.elapsed();
    assert_eq!(links.len(), 100, "every other link is delivered");
    assert!(took < StdDuration::from_secs(10), "took {took:?}");
    assert!(
        links
            .iter()
            .all(|m| m.to.iter().all(|to| !to.contains("ppk_stuck"))),
        "the refused address received nothing"
    );

    // Retries, each when the last failure said, each delay double the one before (up to the
    // cap), until the link's expiry: then it is given up, recorded, and the row retired.
    let mut seen = first;
    let mut delays = Vec::new();
    while let Some((_, Some(retry_at), at)) = seen.last().copied() {
        assert!(seen.len() < 40, "retries never end: {seen:?}");
        delays.push((retry_at - at).num_seconds());
        s.clock.set(retry_at);
        seen = wait_for_failures(&s, stuck, seen.len() + 1).await;
    }
    let attempts: Vec<u32> = seen.iter().map(|f| f.0).collect();
    assert_eq!(
        attempts,
        (1..=u32::try_from(seen.len()).unwrap()).collect::<Vec<_>>(),
        "each attempt counted once"
    );
    assert!(delays.len() >= 8, "retried with backoff: {delays:?}");
    assert_eq!(&delays[..5], &[2, 4, 8, 16, 32], "{delays:?}");
    // Each delay doubles up to the ten-minute cap; the last may be cut short by the deadline.
    let last = delays.len() - 1;
    for i in 1..last {
        assert_eq!(delays[i], (delays[i - 1] * 2).min(600), "{delays:?}");
    }
    assert!(
        delays[last] <= (delays[last - 1] * 2).min(600),
        "{delays:?}"
    );
    let given_up = seen.last().unwrap();
    let expires_at = s.services.config.policy.reset_ttl;
    assert!(given_up.1.is_none(), "the last failure gives up");
    assert!(
        given_up.2 >= seen[0].2 + expires_at - chrono::Duration::seconds(1),
        "given up at the deadline, not before: {given_up:?}"
    );
    // Every refusal the sink gave is an attempt in the log (the last, at the deadline, sends
    // nothing: the link has expired).
    assert_eq!(sink.refused(&email_of(stuck)), seen.len() - 1);
    // The row is retired just after the give-up is recorded, by the same sender.
    let deadline = Instant::now() + StdDuration::from_secs(10);
    let owed = loop {
        let owed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox")
            .fetch_one(&s.services.db.pool)
            .await
            .unwrap();
        if owed == 0 || Instant::now() >= deadline {
            break owed;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    assert_eq!(owed, 0, "nothing is owed any more");
}
