//! `GET /v1/audit/feed`: a system following the log a page at a time sees every event once, in
//! order, while others append; at the head it waits for the next event instead of polling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use spse_totp_tests::TestServer;

/// Reads one page of the feed as the auditor.
async fn page(s: &TestServer, after: u64, limit: usize, wait: u64) -> (Vec<Value>, u64) {
    let (status, body) = s
        .get(
            &format!("/v1/audit/feed?after={after}&limit={limit}&wait_seconds={wait}"),
            &s.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().expect("events").clone();
    let next = body["next_after"].as_u64().expect("next_after");
    (events, next)
}

#[tokio::test]
async fn a_follower_reading_pages_during_appends_sees_every_event_once_in_order() {
    let s = Arc::new(TestServer::start().await);
    // Four writers start logins for new accounts at once: each appends to its own streams, so
    // their transactions interleave and commit in an order none of them chose.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 0..12 {
                    let (status, body) = s.start_login("penyedia", &format!("feed{w}x{i}")).await;
                    assert_eq!(status, StatusCode::CREATED, "{body}");
                }
            })
        })
        .collect();

    let mut seen: Vec<u64> = Vec::new();
    let mut after = 0;
    loop {
        let writing = writers.iter().any(|w| !w.is_finished());
        let (events, next) = page(&s, after, 7, 1).await;
        for event in &events {
            assert!(
                event["stream"].as_str().is_some_and(|s| !s.is_empty()),
                "{event}"
            );
            assert!(event["type"].as_str().is_some(), "{event}");
            assert!(event["recorded_at"].as_str().is_some(), "{event}");
            seen.push(event["position"].as_u64().expect("position"));
        }
        assert_eq!(next, seen.last().copied().unwrap_or(after));
        after = next;
        if events.is_empty() && !writing {
            break;
        }
    }
    for writer in writers {
        writer.await.expect("the writer finished");
    }
    s.settle_mail().await;
    // Whatever came after the last empty page (mail outcomes) is read the same way.
    loop {
        let (events, next) = page(&s, after, 7, 0).await;
        seen.extend(
            events
                .iter()
                .map(|e| e["position"].as_u64().expect("position")),
        );
        if events.is_empty() {
            break;
        }
        after = next;
    }

    let log: Vec<u64> = s
        .services
        .db
        .events
        .read_all(0, 100_000)
        .await
        .expect("the log")
        .iter()
        .map(|e| e.position)
        .collect();
    assert!(
        log.len() >= 4 * 12 * 3,
        "every login appended: {}",
        log.len()
    );
    assert_eq!(seen, log, "every event exactly once, in log order");
}

#[tokio::test]
async fn at_the_head_the_feed_waits_for_the_next_event() {
    let s = Arc::new(TestServer::start().await);
    s.activate_by_code("non_penyedia", "feedwait").await;
    let head = s.services.db.events.head_position().await.expect("head");

    // Nothing new: an empty page after the wait, pointing at the same place.
    let (events, next) = page(&s, head, 10, 1).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(next, head);

    let waiting = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let began = Instant::now();
            let answer = page(&s, head, 10, 25).await;
            (answer, began.elapsed())
        })
    };
    // Give the request time to reach its wait, then append.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = s.start_login("non_penyedia", "feedwait").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ((events, next), waited) = waiting.await.expect("the long-poll answered");
    assert!(
        waited < Duration::from_secs(20),
        "answered on the append, not at the deadline"
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"LoginStarted"), "{types:?}");
    assert_eq!(events[0]["position"].as_u64(), Some(head + 1));
    assert_eq!(events[0]["stream"], "account-non_penyedia-FEEDWAIT");
    assert_eq!(
        next,
        events
            .last()
            .and_then(|e| e["position"].as_u64())
            .unwrap_or(0)
    );
}

#[tokio::test]
async fn only_auditors_follow_and_bad_queries_are_refused() {
    let s = TestServer::start().await;
    for key in [&s.portal_key, &s.helpdesk_key] {
        let (status, body) = s.get("/v1/audit/feed", key).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = s.get("/v1/audit/feed", "not-a-key").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for query in [
        "limit=0",
        "limit=1001",
        "wait_seconds=31",
        "after=-1",
        "after=x",
        "position=3",
    ] {
        let (status, body) = s
            .get(&format!("/v1/audit/feed?{query}"), &s.auditor_key)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    // The feed's pages are not themselves events: reading changes nothing in the log.
    let head = s.services.db.events.head_position().await.expect("head");
    let (events, _) = page(&s, 0, 1000, 0).await;
    assert_eq!(events.len() as u64, head);
    assert_eq!(
        s.services.db.events.head_position().await.expect("head"),
        head
    );
}
