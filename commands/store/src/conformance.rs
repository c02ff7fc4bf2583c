//! The event store conformance suite: what every adapter of [`EventStore`] must do, written once.
//!
//! Each check is a public async function that takes a fresh, empty store and either returns an
//! operational [`StoreError`] or panics with a message that says which promise was broken. The
//! checks that race tasks against each other take an `Arc<dyn EventStore>` so they can spawn.
//!
//! An adapter's tests call [`run_all`] with a factory that opens a fresh, empty store per check,
//! and [`survives_reopen`] with one that opens the same store again:
//!
//! ```text
//! conformance::run_all(|| async { open_fresh_store().await }).await;
//! ```
//!
//! An adapter is done when the suite passes, not before.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio::task::{JoinError, JoinSet};
use uuid::Uuid;

use crate::{
    Actor, Appended, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreError,
};

/// How long one check may take before it is reported as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// A read limit larger than anything a check appends.
const ALL: usize = 100_000;

/// How long a check waits for something that should happen promptly (a wake-up, a reader
/// catching up) before it calls it missing.
const PROMPTLY: Duration = Duration::from_secs(10);

/// The future a registered check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A registered check: runs against the store it is given.
pub type Check = fn(Arc<dyn EventStore>) -> CheckFuture;

/// The checks that expect a repeated event id to be refused with `DuplicateEvent`. A store that
/// takes it as an idempotent retry instead runs [`repeated_event_id_is_never_stored_twice`].
const NEEDS_DUPLICATE_REFUSAL: &[&str] = &[
    "refused_appends_leave_no_gaps",
    "duplicate_event_id_is_refused",
    "duplicate_event_id_does_not_fail_concurrent_appends",
];

/// The store as the checks see it: itself, or, when its positions are not consecutive, through
/// consecutive ordinals (which also checks that its log only ever grows at the end).
pub async fn as_checked(store: Arc<dyn EventStore>) -> Result<Arc<dyn EventStore>, StoreError> {
    if store.dense_positions() {
        Ok(store)
    } else {
        crate::ordinal_view::OrdinalView::wrap(store).await
    }
}

/// For stores that take a repeated event id as an idempotent retry: retrying an append, with
/// the same ids at the same expected version, stores nothing new and reports the same version.
pub fn repeated_event_id_is_never_stored_twice(store: Arc<dyn EventStore>) -> CheckFuture {
    Box::pin(async move {
        let sent = events("retried", 2);
        let first = store
            .append("stream", ExpectedVersion::NoStream, sent.clone())
            .await?;
        let before = store.read_all(0, ALL).await?;
        match store
            .append("stream", ExpectedVersion::NoStream, sent.clone())
            .await
        {
            Ok(again) => assert_eq!(
                again.version, first.version,
                "a retry reports the same version"
            ),
            Err(StoreError::DuplicateEvent(_)) => {}
            Err(e) => panic!("a retried append failed: {e:?}"),
        }
        let after = store.read_all(0, ALL).await?;
        assert_eq!(
            recorded_ids(&after),
            recorded_ids(&before),
            "a retry stored an event twice"
        );
        assert_eq!(store.stream_version("stream").await?, 2);
        Ok(())
    })
}

/// Every check, by name, in the order [`run_all`] runs them.
pub fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! by_ref {
        ($check:ident) => {
            (
                stringify!($check),
                (|store: Arc<dyn EventStore>| -> CheckFuture {
                    Box::pin(async move { $check(&*store).await })
                }) as Check,
            )
        };
    }
    macro_rules! by_arc {
        ($check:ident) => {
            (
                stringify!($check),
                (|store: Arc<dyn EventStore>| -> CheckFuture { Box::pin($check(store)) }) as Check,
            )
        };
    }
    vec![
        by_ref!(empty_store_is_empty),
        by_ref!(append_to_new_stream),
        by_ref!(append_with_exact_version),
        by_ref!(wrong_expected_version_conflicts),
        by_ref!(no_stream_on_existing_stream_conflicts),
        by_ref!(any_always_appends),
        by_ref!(empty_append_is_refused),
        by_ref!(read_stream_from_version_with_limit),
        by_ref!(unknown_stream_is_empty),
        by_ref!(stream_names_are_exact),
        by_ref!(read_all_in_pages),
        by_ref!(refused_appends_leave_no_gaps),
        by_ref!(events_round_trip_exactly),
        by_ref!(duplicate_event_id_is_refused),
        by_arc!(duplicate_event_id_does_not_fail_concurrent_appends),
        by_arc!(racing_no_stream_appends_one_wins),
        by_arc!(concurrent_appends_to_one_stream),
        by_arc!(concurrent_streams_with_live_reader),
        by_ref!(subscribe_sees_head_move),
        by_ref!(events_are_hash_chained_per_stream),
    ]
}

/// Runs every check, each on a fresh store from `fresh`, one after the other. Prints one line
/// per check with its time; panics at the end naming every check that failed and why.
pub async fn run_all<F, Fut, E>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn EventStore>, E>>,
    E: Display,
{
    let checks = checks();
    let total = checks.len();
    let started = Instant::now();
    let mut failures = Vec::new();
    for (name, mut check) in checks {
        let store = match fresh().await {
            Ok(store) => store,
            Err(e) => {
                println!("conformance {name}: FAILED (no fresh store)");
                failures.push(format!("{name}: could not open a fresh store: {e}"));
                continue;
            }
        };
        let store = match as_checked(store).await {
            Ok(store) => store,
            Err(e) => {
                println!("conformance {name}: FAILED (the fresh store cannot be read)");
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if !store.refuses_duplicate_ids() && NEEDS_DUPLICATE_REFUSAL.contains(&name) {
            println!(
                "conformance {name}: replaced by repeated_event_id_is_never_stored_twice (the \
                 store takes a repeated event id as an idempotent retry)"
            );
            check = repeated_event_id_is_never_stored_twice;
        }
        let check_started = Instant::now();
        let mut task = tokio::spawn(check(store));
        let verdict = match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("store error: {e} ({e:?})")),
            Ok(Err(join)) => Err(join_failure(join)),
            Err(_) => {
                task.abort();
                Err(format!("did not finish within {CHECK_TIMEOUT:?}"))
            }
        };
        let took = check_started.elapsed();
        match verdict {
            Ok(()) => println!("conformance {name}: ok in {took:?}"),
            Err(why) => {
                println!("conformance {name}: FAILED in {took:?}");
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    println!(
        "conformance: {} of {total} checks passed in {:?}",
        total - failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "event store conformance: {} of {total} checks failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn join_failure(join: JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
        Err(join) => format!("task did not complete: {join}"),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "(a panic without a message)".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A timestamp at `micros` since the Unix epoch: the precision every adapter must keep.
fn at_micros(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::microseconds(micros)
}

/// Now, truncated to microseconds.
fn now_micros() -> DateTime<Utc> {
    at_micros(Utc::now().timestamp_micros())
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload,
        metadata: EventMetadata::system(),
        recorded_at: now_micros(),
    }
}

/// `n` distinct events tagged with `tag` and their index.
fn events(tag: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("ConformanceEvent", json!({ "tag": tag, "i": i })))
        .collect()
}

fn ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

fn recorded_ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn range(first: u64, last: u64) -> Vec<u64> {
    (first..=last).collect()
}

/// Everything a reader can see: the head and the whole log.
async fn snapshot(store: &dyn EventStore) -> Result<(u64, Vec<RecordedEvent>), StoreError> {
    Ok((store.head_position().await?, store.read_all(0, ALL).await?))
}

/// Asserts `result` is a conflict on `stream` reporting `expected` and the true `actual`.
fn assert_conflict(
    result: Result<Appended, StoreError>,
    stream: &str,
    expected: ExpectedVersion,
    actual: u64,
    context: &str,
) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(s, stream, "{context}: the conflict names the wrong stream");
            assert_eq!(
                e, expected,
                "{context}: the conflict reports the wrong expected version"
            );
            assert_eq!(
                a, actual,
                "{context}: the conflict reports the wrong actual version"
            );
        }
        other => panic!(
            "{context}: expected Conflict {{ stream: {stream:?}, expected: {expected}, actual: \
             {actual} }}, got {other:?}"
        ),
    }
}

fn assert_empty_append(result: Result<Appended, StoreError>, context: &str) {
    match result {
        Err(StoreError::EmptyAppend) => {}
        other => panic!("{context}: expected EmptyAppend, got {other:?}"),
    }
}

fn assert_duplicate(result: Result<Appended, StoreError>, id: Uuid, context: &str) {
    match result {
        Err(StoreError::DuplicateEvent(reported)) => {
            assert_eq!(
                reported, id,
                "{context}: DuplicateEvent names the wrong event id"
            );
        }
        other => panic!("{context}: expected DuplicateEvent({id}), got {other:?}"),
    }
}

/// Asserts that the events `appended` reported as `outcome` are stored where it says, in `log`
/// (the whole log, in position order starting at position 1).
fn assert_stored_as_reported(
    log: &[RecordedEvent],
    stream: &str,
    appended: &[Uuid],
    outcome: Appended,
    context: &str,
) {
    let n = appended.len() as u64;
    assert_eq!(
        outcome.last_position + 1 - outcome.first_position,
        n,
        "{context}: first_position..=last_position of {outcome:?} does not span the {n} events \
         appended"
    );
    for (i, id) in appended.iter().enumerate() {
        let offset = i as u64;
        let position = outcome.first_position + offset;
        let found = log.iter().find(|e| e.event_id == *id);
        let Some(found) = found else {
            panic!("{context}: event {id} was reported appended but is not in the log");
        };
        assert_eq!(
            found.position, position,
            "{context}: event {i} of the append is not at the position reported in {outcome:?}"
        );
        assert_eq!(
            found.stream, stream,
            "{context}: event {i} is in the wrong stream"
        );
        assert_eq!(
            found.version,
            outcome.version + 1 - n + offset,
            "{context}: event {i} does not have the version implied by {outcome:?}"
        );
    }
}

/// Collects every task's outcome, re-raising a task's panic here so its message survives.
async fn join_all<T: 'static>(
    mut tasks: JoinSet<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut outcomes = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome?),
            Err(join) => match join.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(join) => panic!("a spawned task did not complete: {join}"),
            },
        }
    }
    Ok(outcomes)
}

// ---------------------------------------------------------------------------------------------
// Appends, versions, positions

/// A fresh store has no events, head 0, and every stream at version 0.
pub async fn empty_store_is_empty(store: &dyn EventStore) -> Result<(), StoreError> {
    assert_eq!(store.head_position().await?, 0, "a fresh store's head is 0");
    assert!(
        store.read_all(0, ALL).await?.is_empty(),
        "a fresh store's log is empty"
    );
    assert_eq!(store.stream_version("account-1").await?, 0);
    assert!(store.read_stream("account-1", 0, ALL).await?.is_empty());
    Ok(())
}

/// `NoStream` creates a stream: versions from 1, contiguous, positions from 1; `Appended` says so.
pub async fn append_to_new_stream(store: &dyn EventStore) -> Result<(), StoreError> {
    let first = events("a", 3);
    let appended = store
        .append("stream-a", ExpectedVersion::NoStream, first.clone())
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 3,
            first_position: 1,
            last_position: 3
        },
        "three events appended to a new stream in an empty store"
    );
    let read = store.read_stream("stream-a", 1, ALL).await?;
    assert_eq!(versions(&read), vec![1, 2, 3], "versions start at 1");
    assert_eq!(positions(&read), vec![1, 2, 3], "positions start at 1");
    assert_eq!(recorded_ids(&read), ids(&first), "events in append order");
    assert!(read.iter().all(|e| e.stream == "stream-a"));
    assert_eq!(store.stream_version("stream-a").await?, 3);
    assert_eq!(store.head_position().await?, 3);

    let second = events("b", 1);
    let appended = store
        .append("stream-b", ExpectedVersion::NoStream, second.clone())
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 1,
            first_position: 4,
            last_position: 4
        },
        "a second new stream starts at version 1 and continues the global positions"
    );
    let read = store.read_stream("stream-b", 1, ALL).await?;
    assert_eq!(versions(&read), vec![1]);
    assert_eq!(positions(&read), vec![4]);
    assert_eq!(recorded_ids(&read), ids(&second));
    assert_eq!(store.stream_version("stream-b").await?, 1);
    assert_eq!(store.stream_version("stream-a").await?, 3, "untouched");
    assert_eq!(store.head_position().await?, 4);
    Ok(())
}

/// `Exact(current version)` appends; versions stay contiguous across appends.
pub async fn append_with_exact_version(store: &dyn EventStore) -> Result<(), StoreError> {
    let mut all = events("1", 3);
    store
        .append("stream", ExpectedVersion::NoStream, all.clone())
        .await?;
    let more = events("2", 2);
    let appended = store
        .append("stream", ExpectedVersion::Exact(3), more.clone())
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 5,
            first_position: 4,
            last_position: 5
        },
        "Exact(3) on a stream at 3"
    );
    all.extend(more);
    let last = events("3", 1);
    let appended = store
        .append("stream", ExpectedVersion::at(5), last.clone())
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 6,
            first_position: 6,
            last_position: 6
        },
        "ExpectedVersion::at(5) on a stream at 5"
    );
    all.extend(last);
    let read = store.read_stream("stream", 1, ALL).await?;
    assert_eq!(versions(&read), range(1, 6), "versions are contiguous");
    assert_eq!(positions(&read), range(1, 6));
    assert_eq!(recorded_ids(&read), ids(&all));
    assert_eq!(store.stream_version("stream").await?, 6);
    Ok(())
}

/// A wrong expected version is a conflict that reports the true version and changes nothing.
pub async fn wrong_expected_version_conflicts(store: &dyn EventStore) -> Result<(), StoreError> {
    store
        .append("stream", ExpectedVersion::NoStream, events("s", 3))
        .await?;
    store
        .append("other", ExpectedVersion::NoStream, events("o", 1))
        .await?;
    let before = snapshot(store).await?;
    for (expected, context) in [
        (
            ExpectedVersion::Exact(2),
            "Exact(2) (stale) on a stream at 3",
        ),
        (
            ExpectedVersion::Exact(1),
            "Exact(1) (stale) on a stream at 3",
        ),
        (
            ExpectedVersion::Exact(4),
            "Exact(4) (ahead) on a stream at 3",
        ),
        (ExpectedVersion::Exact(100), "Exact(100) on a stream at 3"),
    ] {
        let result = store.append("stream", expected, events("x", 2)).await;
        assert_conflict(result, "stream", expected, 3, context);
    }
    let result = store
        .append("missing", ExpectedVersion::Exact(1), events("m", 1))
        .await;
    assert_conflict(
        result,
        "missing",
        ExpectedVersion::Exact(1),
        0,
        "Exact(1) on a stream with no events",
    );
    assert_eq!(
        snapshot(store).await?,
        before,
        "conflicting appends changed the log or the head"
    );
    assert_eq!(store.stream_version("stream").await?, 3);
    assert_eq!(
        store.stream_version("missing").await?,
        0,
        "a refused append must not create the stream"
    );
    // The stream still takes the right version afterwards.
    let appended = store
        .append("stream", ExpectedVersion::Exact(3), events("y", 1))
        .await?;
    assert_eq!(appended.version, 4);
    assert_eq!(appended.first_position, 5, "no position was used up");
    Ok(())
}

/// `NoStream` on a stream that has events conflicts, reporting its version.
pub async fn no_stream_on_existing_stream_conflicts(
    store: &dyn EventStore,
) -> Result<(), StoreError> {
    store
        .append("stream", ExpectedVersion::NoStream, events("s", 2))
        .await?;
    let before = snapshot(store).await?;
    let result = store
        .append("stream", ExpectedVersion::NoStream, events("again", 1))
        .await;
    assert_conflict(
        result,
        "stream",
        ExpectedVersion::NoStream,
        2,
        "NoStream on a stream at 2",
    );
    let result = store
        .append("stream", ExpectedVersion::at(0), events("again", 1))
        .await;
    assert_conflict(
        result,
        "stream",
        ExpectedVersion::NoStream,
        2,
        "ExpectedVersion::at(0) on a stream at 2",
    );
    assert_eq!(snapshot(store).await?, before, "a conflict changed the log");
    Ok(())
}

/// `Any` appends whatever the stream's version, new or not.
pub async fn any_always_appends(store: &dyn EventStore) -> Result<(), StoreError> {
    let appended = store
        .append("stream", ExpectedVersion::Any, events("1", 1))
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 1,
            first_position: 1,
            last_position: 1
        },
        "Any on a new stream"
    );
    let appended = store
        .append("stream", ExpectedVersion::Any, events("2", 2))
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 3,
            first_position: 2,
            last_position: 3
        },
        "Any on a stream at 1"
    );
    store
        .append("stream", ExpectedVersion::Exact(3), events("3", 1))
        .await?;
    let appended = store
        .append("stream", ExpectedVersion::Any, events("4", 1))
        .await?;
    assert_eq!(appended.version, 5, "Any on a stream at 4");
    let read = store.read_stream("stream", 1, ALL).await?;
    assert_eq!(versions(&read), range(1, 5));
    assert_eq!(positions(&read), range(1, 5));
    Ok(())
}

/// An append of no events is refused, whatever the expected version, and creates nothing.
pub async fn empty_append_is_refused(store: &dyn EventStore) -> Result<(), StoreError> {
    let before = snapshot(store).await?;
    assert_empty_append(
        store
            .append("new", ExpectedVersion::NoStream, Vec::new())
            .await,
        "empty append with NoStream to a new stream",
    );
    assert_empty_append(
        store.append("new", ExpectedVersion::Any, Vec::new()).await,
        "empty append with Any to a new stream",
    );
    assert_eq!(snapshot(store).await?, before);
    assert_eq!(
        store.stream_version("new").await?,
        0,
        "an empty append must not create the stream"
    );

    store
        .append("stream", ExpectedVersion::NoStream, events("s", 2))
        .await?;
    let before = snapshot(store).await?;
    assert_empty_append(
        store
            .append("stream", ExpectedVersion::Exact(2), Vec::new())
            .await,
        "empty append with the right Exact version",
    );
    assert_empty_append(
        store
            .append("stream", ExpectedVersion::Any, Vec::new())
            .await,
        "empty append with Any to an existing stream",
    );
    assert_eq!(snapshot(store).await?, before);
    assert_eq!(store.stream_version("stream").await?, 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads

/// `read_stream` returns versions >= `from_version`, in order, at most `limit`, of that stream
/// only; `from_version` 0 and 1 both mean "from the start".
pub async fn read_stream_from_version_with_limit(store: &dyn EventStore) -> Result<(), StoreError> {
    let mut stream = Vec::new();
    // Interleave another stream so positions and versions differ.
    for i in 0..10 {
        let e = events(&format!("s{i}"), 1);
        store
            .append("stream", ExpectedVersion::at(i), e.clone())
            .await?;
        stream.extend(e);
        store
            .append("noise", ExpectedVersion::Any, events("n", 1))
            .await?;
    }
    let all = store.read_stream("stream", 1, ALL).await?;
    assert_eq!(versions(&all), range(1, 10));
    assert_eq!(recorded_ids(&all), ids(&stream));
    assert!(
        all.iter().all(|e| e.stream == "stream"),
        "another stream's events leaked in"
    );
    assert_eq!(
        positions(&all),
        (0..10).map(|i| 2 * i + 1).collect::<Vec<u64>>(),
        "positions are global, not per stream"
    );
    assert_eq!(
        store.read_stream("stream", 0, ALL).await?,
        all,
        "from_version 0 reads from the start"
    );
    let page = store.read_stream("stream", 4, 3).await?;
    assert_eq!(versions(&page), vec![4, 5, 6], "from 4, limit 3");
    assert_eq!(page.as_slice(), &all[3..6]);
    assert_eq!(
        versions(&store.read_stream("stream", 8, 10).await?),
        vec![8, 9, 10],
        "a limit past the end returns what there is"
    );
    assert_eq!(
        versions(&store.read_stream("stream", 10, 1).await?),
        vec![10],
        "from the last version"
    );
    assert!(
        store.read_stream("stream", 11, ALL).await?.is_empty(),
        "from past the last version"
    );
    assert!(
        store.read_stream("stream", u64::MAX, ALL).await?.is_empty(),
        "from u64::MAX"
    );
    assert!(
        store.read_stream("stream", 1, 0).await?.is_empty(),
        "limit 0 returns nothing"
    );
    assert_eq!(
        store.read_stream("stream", 1, usize::MAX).await?,
        all,
        "limit usize::MAX is not an error"
    );
    // Paging by version gives the same events.
    let mut paged = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_stream("stream", from, 3).await?;
        let Some(last) = page.last() else { break };
        from = last.version + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all, "reading in pages of 3");
    assert_eq!(store.stream_version("stream").await?, 10);
    assert_eq!(store.stream_version("noise").await?, 10);
    Ok(())
}

/// A stream nobody appended to reads as empty at version 0, also when others exist.
pub async fn unknown_stream_is_empty(store: &dyn EventStore) -> Result<(), StoreError> {
    assert!(store.read_stream("nobody", 0, ALL).await?.is_empty());
    assert_eq!(store.stream_version("nobody").await?, 0);
    store
        .append("somebody", ExpectedVersion::NoStream, events("s", 2))
        .await?;
    assert!(store.read_stream("nobody", 0, ALL).await?.is_empty());
    assert!(store.read_stream("nobody", 1, 1).await?.is_empty());
    assert_eq!(store.stream_version("nobody").await?, 0);
    assert_eq!(store.stream_version("").await?, 0, "the empty name");
    assert!(store.read_stream("", 0, ALL).await?.is_empty());
    Ok(())
}

/// Streams are told apart by exact name: no prefix, case, pattern or encoding games.
pub async fn stream_names_are_exact(store: &dyn EventStore) -> Result<(), StoreError> {
    let names = [
        "account-1",
        "account-10",
        "account-1-",
        "Account-1",
        "ACCOUNT-1",
        "account_1",
        "account%1",
        "account-%",
        "account-_",
        "account-*",
        "account 1",
        "account-1 ",
        "o'brien\"; --",
        "back\\slash",
        "ünïcödé/アカウント/🔐",
        "account:user:00000000-0000-0000-0000-000000000001",
    ];
    let mut appended = HashMap::new();
    for name in names {
        let e = events(name, 1);
        store
            .append(name, ExpectedVersion::NoStream, e.clone())
            .await?;
        appended.insert(name, e[0].event_id);
    }
    for name in names {
        let read = store.read_stream(name, 0, ALL).await?;
        assert_eq!(
            recorded_ids(&read),
            vec![appended[name]],
            "stream {name:?} must hold exactly its own event"
        );
        assert_eq!(read[0].stream, name, "the stream name round-trips exactly");
        assert_eq!(read[0].version, 1);
        assert_eq!(store.stream_version(name).await?, 1, "stream {name:?}");
    }
    assert_eq!(store.stream_version("account-").await?, 0);
    assert_eq!(store.stream_version("account").await?, 0);
    let log = store.read_all(0, ALL).await?;
    assert_eq!(
        log.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
        names.to_vec(),
        "read_all reports each event's stream exactly"
    );
    Ok(())
}

/// `read_all` after a position, in pages: strictly increasing, contiguous positions, every
/// stream's events interleaved in commit order, no duplicates; the head is the last position.
pub async fn read_all_in_pages(store: &dyn EventStore) -> Result<(), StoreError> {
    assert!(store.read_all(0, 10).await?.is_empty());
    assert_eq!(store.head_position().await?, 0);

    // A deterministic interleaving of appends of 1..=3 events over four streams.
    let streams = ["alpha", "beta", "gamma", "delta"];
    let mut in_commit_order = Vec::new();
    let mut stream_of = HashMap::new();
    for round in 0..8usize {
        for (s, stream) in streams.iter().enumerate() {
            if (round + s) % 3 == 0 {
                continue;
            }
            let batch = events(stream, 1 + (round * 7 + s) % 3);
            let appended = store
                .append(stream, ExpectedVersion::Any, batch.clone())
                .await?;
            assert_eq!(
                appended.first_position,
                in_commit_order.len() as u64 + 1,
                "each append continues the global positions"
            );
            for e in &batch {
                stream_of.insert(e.event_id, *stream);
            }
            in_commit_order.extend(ids(&batch));
        }
    }
    let total = in_commit_order.len() as u64;
    assert_eq!(
        store.head_position().await?,
        total,
        "head is the last position"
    );

    let whole = store.read_all(0, ALL).await?;
    assert_eq!(positions(&whole), range(1, total), "positions are 1..=head");
    assert_eq!(
        recorded_ids(&whole),
        in_commit_order,
        "read_all is in commit order"
    );
    for e in &whole {
        assert_eq!(Some(&e.stream.as_str()), stream_of.get(&e.event_id));
    }
    let mut per_stream: HashMap<&str, u64> = HashMap::new();
    for e in &whole {
        let v = per_stream.entry(e.stream.as_str()).or_insert(0);
        *v += 1;
        assert_eq!(
            e.version, *v,
            "each stream's versions appear in order in the log"
        );
    }

    for page_size in [1usize, 2, 3, 5, 8, 13, 64, ALL] {
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let page = store.read_all(after, page_size).await?;
            assert!(
                page.len() <= page_size,
                "a page of {page_size} returned {}",
                page.len()
            );
            let Some(last) = page.last() else { break };
            assert_eq!(
                positions(&page),
                range(after + 1, last.position),
                "a page of {page_size} after {after} is contiguous"
            );
            if (page.len() as u64) < total - after {
                assert_eq!(
                    page.len(),
                    page_size,
                    "a page short of the end must be full (size {page_size} after {after})"
                );
            }
            after = last.position;
            seen.extend(page);
        }
        assert_eq!(seen, whole, "reading in pages of {page_size}");
    }

    let tail = store.read_all(10, ALL).await?;
    assert_eq!(tail.as_slice(), &whole[10..], "read_all after 10");
    assert!(
        store.read_all(total, ALL).await?.is_empty(),
        "nothing after the head"
    );
    assert!(store.read_all(total + 5, ALL).await?.is_empty());
    assert!(store.read_all(u64::MAX, ALL).await?.is_empty());
    assert!(store.read_all(0, 0).await?.is_empty(), "limit 0");
    assert_eq!(
        store.read_all(0, usize::MAX).await?,
        whole,
        "limit usize::MAX"
    );
    Ok(())
}

/// Conflicts, duplicates and empty appends use up no positions or versions.
pub async fn refused_appends_leave_no_gaps(store: &dyn EventStore) -> Result<(), StoreError> {
    let first = events("first", 2);
    store
        .append("stream", ExpectedVersion::NoStream, first.clone())
        .await?;
    let _ = store
        .append("stream", ExpectedVersion::Exact(7), events("conflict", 3))
        .await;
    let _ = store
        .append("stream", ExpectedVersion::NoStream, events("conflict", 1))
        .await;
    let _ = store
        .append("other", ExpectedVersion::Any, first[..1].to_vec())
        .await;
    let _ = store
        .append("stream", ExpectedVersion::Any, Vec::new())
        .await;
    let appended = store
        .append("stream", ExpectedVersion::Exact(2), events("next", 1))
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 3,
            first_position: 3,
            last_position: 3
        },
        "refused appends left a gap in versions or positions"
    );
    let appended = store
        .append("other", ExpectedVersion::NoStream, events("other", 1))
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: 1,
            first_position: 4,
            last_position: 4
        },
        "a refused append to a new stream left a trace"
    );
    assert_eq!(positions(&store.read_all(0, ALL).await?), range(1, 4));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What is stored is what was appended

fn full_metadata(actor: Actor) -> EventMetadata {
    EventMetadata {
        actor,
        client_ip: Some("2001:db8::1".to_owned()),
        user_agent: Some("SPSE-App/1.2 (Android 14; \"Pixel\") ✓".to_owned()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        causation_id: Some(format!("req-{}", Uuid::new_v4())),
    }
}

/// The events [`events_round_trip_exactly`] and [`survives_reopen`] store: every actor, with
/// and without optional metadata, awkward payloads, types, schema versions and timestamps.
fn awkward_events() -> Vec<NewEvent> {
    let key_id = Uuid::new_v4();
    let actors = vec![
        Actor::Portal {
            key_id,
            key_name: "portal-prod".to_owned(),
        },
        Actor::Device {
            device_id: Uuid::new_v4(),
        },
        Actor::Helpdesk {
            operator: "Zoë O'Neill".to_owned(),
            key_id,
        },
        Actor::System,
        Actor::Operator {
            name: "root@srv-01".to_owned(),
        },
    ];
    let mut metadata: Vec<EventMetadata> = actors.iter().cloned().map(full_metadata).collect();
    metadata.extend(actors.into_iter().map(|actor| EventMetadata {
        actor,
        client_ip: None,
        user_agent: None,
        correlation_id: None,
        causation_id: None,
    }));
    metadata.push(EventMetadata {
        actor: Actor::Operator {
            name: String::new(),
        },
        client_ip: Some(String::new()),
        user_agent: None,
        correlation_id: Some(String::new()),
        causation_id: None,
    });

    let payloads = vec![
        json!({}),
        json!([]),
        Value::Null,
        json!(true),
        json!(0),
        json!("just a string"),
        json!({
            "user_type": "student",
            "user_id": "s123456",
            "nested": { "deeper": { "deepest": [1, [2, [3, { "four": 4 }]]] } },
            "empty": { "object": {}, "array": [], "string": "" },
        }),
        json!({
            "u64_max": u64::MAX,
            "i64_min": i64::MIN,
            "i64_max": i64::MAX,
            "zero": 0,
            "negative": -42,
            "half": 1.5,
            "tenth": 0.1,
            "pi": std::f64::consts::PI,
            "tiny": -2.5e-8,
            "huge": 1e300,
        }),
        json!({
            "unicode": "ünïcödé ✓ 🔐 アカウント",
            "escapes": "quote \" backslash \\ slash / newline \n tab \t cr \r",
            "control": "\u{1} \u{1f} \u{7f}",
            // PostgreSQL's jsonb refuses \u0000 in strings: an adapter that stores jsonb must
            // cope (escape it, or store text), because the port takes any JSON value.
            "nul": "before\u{0}after",
            "sql": "'); DROP TABLE events; --",
            "keys with spaces": { "": "empty key", "ключ": "значение" },
        }),
        json!([null, false, "", [], {}, 0, -0.0, 123_456_789_012_345_678u64]),
    ];

    let timestamps = [
        DateTime::<Utc>::UNIX_EPOCH,
        at_micros(1),
        at_micros(-1),
        at_micros(946_684_800_000_000),
        at_micros(1_764_460_800_123_456),
        at_micros(253_402_300_799_999_999),
        now_micros(),
    ];
    let types = [
        "AccountRegistered",
        "DeviceActivated",
        "CodeRejected",
        "Ereignis.Überprüft",
        "x",
    ];
    let schema_versions = [1, 0, 2, 7, u32::MAX];

    let n = metadata.len().max(payloads.len()).max(timestamps.len());
    (0..n)
        .map(|i| NewEvent {
            event_id: Uuid::new_v4(),
            event_type: types[i % types.len()].to_owned(),
            schema_version: schema_versions[i % schema_versions.len()],
            payload: payloads[i % payloads.len()].clone(),
            metadata: metadata[i % metadata.len()].clone(),
            recorded_at: timestamps[i % timestamps.len()],
        })
        .collect()
}

fn assert_same_event(stored: &RecordedEvent, sent: &NewEvent, context: &str) {
    assert_eq!(stored.event_id, sent.event_id, "{context}: event_id");
    assert_eq!(stored.event_type, sent.event_type, "{context}: event_type");
    assert_eq!(
        stored.schema_version, sent.schema_version,
        "{context}: schema_version"
    );
    assert_eq!(stored.payload, sent.payload, "{context}: payload");
    assert_eq!(stored.metadata, sent.metadata, "{context}: metadata");
    assert_eq!(
        stored.recorded_at, sent.recorded_at,
        "{context}: recorded_at (must keep microseconds)"
    );
}

/// Payload, metadata (every actor), event id, type, schema version and `recorded_at` to the
/// microsecond come back exactly as appended, from `read_stream` and `read_all` alike.
pub async fn events_round_trip_exactly(store: &dyn EventStore) -> Result<(), StoreError> {
    let sent = awkward_events();
    // One append of several events, then one event per append.
    store
        .append("batch", ExpectedVersion::NoStream, sent.clone())
        .await?;
    let singles: Vec<NewEvent> = awkward_events();
    for (i, e) in singles.iter().enumerate() {
        store
            .append("single", ExpectedVersion::at(i as u64), vec![e.clone()])
            .await?;
    }
    let batch = store.read_stream("batch", 1, ALL).await?;
    let single = store.read_stream("single", 1, ALL).await?;
    assert_eq!(batch.len(), sent.len());
    assert_eq!(single.len(), singles.len());
    for (i, (stored, e)) in batch.iter().zip(&sent).enumerate() {
        assert_same_event(stored, e, &format!("batch event {i}"));
    }
    for (i, (stored, e)) in single.iter().zip(&singles).enumerate() {
        assert_same_event(stored, e, &format!("single event {i}"));
    }
    let log = store.read_all(0, ALL).await?;
    let mut by_stream = batch.clone();
    by_stream.extend(single);
    assert_eq!(
        log, by_stream,
        "read_all and read_stream return the same records"
    );
    Ok(())
}

/// Every event carries the hash [`crate::chain::event_hash`] gives it, chained to the previous
/// event of its own stream (not of the log), whether appended in one batch, one at a time, or
/// interleaved with other streams and with `Any`.
pub async fn events_are_hash_chained_per_stream(store: &dyn EventStore) -> Result<(), StoreError> {
    store
        .append("chain-a", ExpectedVersion::NoStream, awkward_events())
        .await?;
    for (i, e) in awkward_events().into_iter().enumerate() {
        store
            .append("chain-b", ExpectedVersion::Any, vec![e])
            .await?;
        store
            .append("chain-a", ExpectedVersion::Any, events(&format!("a{i}"), 1))
            .await?;
    }
    for stream in ["chain-a", "chain-b"] {
        assert_chained(store, stream).await?;
    }
    Ok(())
}

/// Asserts that every event of `stream` carries the hash [`crate::chain::event_hash`] gives it,
/// chained to the stream's event before it.
pub async fn assert_chained(store: &dyn EventStore, stream: &str) -> Result<(), StoreError> {
    let mut previous: Option<String> = None;
    for e in store.read_stream(stream, 1, ALL).await? {
        let metadata = serde_json::to_value(&e.metadata).map_err(|err| StoreError::Corrupt {
            position: e.position,
            reason: err.to_string(),
        })?;
        let expected = crate::chain::event_hash(
            previous.as_deref(),
            &crate::chain::ChainedFields {
                stream: &e.stream,
                version: e.version,
                event_id: e.event_id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                payload: &e.payload,
                metadata: &metadata,
                recorded_at_micros: e.recorded_at.timestamp_micros(),
            },
        );
        assert_eq!(
            e.hash.as_deref(),
            Some(expected.as_str()),
            "{stream} version {} is chained to its stream's previous event",
            e.version
        );
        previous = e.hash;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Idempotency by event id

/// An event id already stored is refused, in any stream, with any expected version, and so is
/// one repeated within an append; nothing of a refused append is stored.
pub async fn duplicate_event_id_is_refused(store: &dyn EventStore) -> Result<(), StoreError> {
    let original = events("original", 2);
    store
        .append("stream", ExpectedVersion::NoStream, original.clone())
        .await?;
    let before = snapshot(store).await?;

    let dup = original[1].event_id;
    let retried = original[1].clone();
    assert_duplicate(
        store
            .append("stream", ExpectedVersion::Any, vec![retried.clone()])
            .await,
        dup,
        "the same event appended again with Any",
    );
    assert_duplicate(
        store
            .append("stream", ExpectedVersion::Exact(2), vec![retried.clone()])
            .await,
        dup,
        "the same event appended again with the right version",
    );
    assert_duplicate(
        store
            .append("elsewhere", ExpectedVersion::NoStream, vec![retried])
            .await,
        dup,
        "the same event id in another stream",
    );
    let mut batch = events("batch", 3);
    batch[2].event_id = original[0].event_id;
    assert_duplicate(
        store
            .append("elsewhere", ExpectedVersion::NoStream, batch)
            .await,
        original[0].event_id,
        "a batch whose last event repeats a stored id",
    );
    let mut twice = events("twice", 2);
    twice[1].event_id = twice[0].event_id;
    let repeated = twice[0].event_id;
    assert_duplicate(
        store.append("elsewhere", ExpectedVersion::Any, twice).await,
        repeated,
        "one append carrying the same id twice",
    );
    assert_eq!(
        snapshot(store).await?,
        before,
        "a refused duplicate left something behind"
    );
    assert_eq!(store.stream_version("elsewhere").await?, 0);
    assert_eq!(store.stream_version("stream").await?, 2);
    let appended = store
        .append("stream", ExpectedVersion::Exact(2), events("after", 1))
        .await?;
    assert_eq!(appended.first_position, 3);
    Ok(())
}

/// A duplicate among many simultaneous appends fails alone; the others all land.
pub async fn duplicate_event_id_does_not_fail_concurrent_appends(
    store: Arc<dyn EventStore>,
) -> Result<(), StoreError> {
    const GOOD: usize = 48;
    let stored = events("stored", 1);
    store
        .append("existing", ExpectedVersion::NoStream, stored.clone())
        .await?;
    let stored_id = stored[0].event_id;

    for round in 0..4 {
        let start = Arc::new(Barrier::new(GOOD + 3));
        let mut tasks = JoinSet::new();
        for i in 0..GOOD {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            let stream = format!("good-{round}-{i}");
            tasks.spawn(async move {
                let batch = events(&stream, 1 + i % 2);
                start.wait().await;
                let outcome = store
                    .append(&stream, ExpectedVersion::NoStream, batch.clone())
                    .await;
                Ok((stream, ids(&batch), outcome))
            });
        }
        // One repeats a stored id; two race with the same new id.
        let shared = Uuid::new_v4();
        for (k, id) in [stored_id, shared, shared].into_iter().enumerate() {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            let stream = format!("dup-{round}-{k}");
            tasks.spawn(async move {
                let mut batch = events(&stream, 2);
                batch[1].event_id = id;
                start.wait().await;
                let outcome = store
                    .append(&stream, ExpectedVersion::Any, batch.clone())
                    .await;
                Ok((stream, ids(&batch), outcome))
            });
        }
        let outcomes = join_all(tasks).await?;
        let log = store.read_all(0, ALL).await?;
        let mut shared_won = 0;
        for (stream, appended_ids, outcome) in outcomes {
            if stream.starts_with("good-") {
                match outcome {
                    Ok(appended) => assert_stored_as_reported(
                        &log,
                        &stream,
                        &appended_ids,
                        appended,
                        &format!("round {round}, {stream}"),
                    ),
                    Err(e) => {
                        panic!("round {round}: {stream} failed beside a duplicate append: {e:?}")
                    }
                }
            } else if appended_ids[1] == stored_id {
                assert_duplicate(
                    outcome,
                    stored_id,
                    &format!("round {round}: the append repeating a stored id"),
                );
                assert_eq!(store.stream_version(&stream).await?, 0);
            } else {
                match outcome {
                    Ok(appended) => {
                        shared_won += 1;
                        assert_stored_as_reported(&log, &stream, &appended_ids, appended, &stream);
                    }
                    Err(StoreError::DuplicateEvent(id)) => {
                        assert_eq!(id, shared, "round {round}: the wrong id was reported");
                        assert_eq!(store.stream_version(&stream).await?, 0);
                    }
                    Err(e) => panic!("round {round}: {stream}: unexpected {e:?}"),
                }
            }
        }
        assert_eq!(
            shared_won, 1,
            "round {round}: of two appends racing with one new event id, exactly one must land"
        );
        let ids_in_log: HashSet<Uuid> = log.iter().map(|e| e.event_id).collect();
        assert_eq!(ids_in_log.len(), log.len(), "an event id is stored twice");
        assert_eq!(
            positions(&log),
            range(1, log.len() as u64),
            "round {round}: positions have a gap"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// Many simultaneous `NoStream` appends to one stream: exactly one wins, the rest conflict
/// with the winner's version; appends to other streams in the same moment are unaffected.
pub async fn racing_no_stream_appends_one_wins(
    store: Arc<dyn EventStore>,
) -> Result<(), StoreError> {
    const RACERS: usize = 24;
    let start = Arc::new(Barrier::new(2 * RACERS));
    let mut tasks = JoinSet::new();
    for i in 0..2 * RACERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            // Even tasks race for "contested"; odd ones each own a stream.
            let stream = if i % 2 == 0 {
                "contested".to_owned()
            } else {
                format!("own-{i}")
            };
            let batch = events(&stream, 2);
            start.wait().await;
            let outcome = store
                .append(&stream, ExpectedVersion::NoStream, batch.clone())
                .await;
            Ok((stream, ids(&batch), outcome))
        });
    }
    let outcomes = join_all(tasks).await?;
    let log = store.read_all(0, ALL).await?;
    let mut winners = 0;
    for (stream, appended_ids, outcome) in outcomes {
        match outcome {
            Ok(appended) => {
                if stream == "contested" {
                    winners += 1;
                }
                assert_stored_as_reported(&log, &stream, &appended_ids, appended, &stream);
            }
            Err(e) => {
                assert_eq!(stream, "contested", "{stream} failed: {e:?}");
                assert_conflict(
                    Err(e),
                    "contested",
                    ExpectedVersion::NoStream,
                    2,
                    "a losing NoStream racer",
                );
            }
        }
    }
    assert_eq!(winners, 1, "exactly one NoStream racer must win");
    assert_eq!(store.stream_version("contested").await?, 2);
    assert_eq!(log.len(), 2 * (RACERS + 1));
    assert_eq!(positions(&log), range(1, log.len() as u64));
    Ok(())
}

/// Tasks race to append to one stream, each reading the version first and retrying on a
/// conflict: every append lands exactly once, versions are contiguous, none is shared.
pub async fn concurrent_appends_to_one_stream(
    store: Arc<dyn EventStore>,
) -> Result<(), StoreError> {
    const TASKS: usize = 32;
    const MAX_RETRIES: usize = 10_000;
    const STREAM: &str = "contended";
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            let batch = events(&format!("task-{i}"), 1 + i % 3);
            start.wait().await;
            let mut conflicts = 0;
            loop {
                let version = store.stream_version(STREAM).await?;
                match store
                    .append(STREAM, ExpectedVersion::at(version), batch.clone())
                    .await
                {
                    Ok(appended) => return Ok((ids(&batch), appended, conflicts)),
                    Err(StoreError::Conflict {
                        expected, actual, ..
                    }) => {
                        assert_eq!(
                            expected,
                            ExpectedVersion::at(version),
                            "task {i}: the conflict reports another expected version"
                        );
                        assert!(
                            actual > version,
                            "task {i}: conflict at version {version} reports actual {actual}; \
                             versions never go back"
                        );
                        conflicts += 1;
                        assert!(
                            conflicts < MAX_RETRIES,
                            "task {i} conflicted {MAX_RETRIES} times"
                        );
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Err(e),
                }
            }
        });
    }
    let mut outcomes = join_all(tasks).await?;
    let total: u64 = outcomes.iter().map(|(ids, _, _)| ids.len() as u64).sum();
    let conflicts: usize = outcomes.iter().map(|(_, _, c)| c).sum();
    let read = store.read_stream(STREAM, 1, ALL).await?;
    let log = store.read_all(0, ALL).await?;
    assert_eq!(read, log, "only the contended stream was written");
    assert_eq!(
        versions(&read),
        range(1, total),
        "versions are contiguous from 1, one event per version ({conflicts} conflicts)"
    );
    assert_eq!(store.stream_version(STREAM).await?, total);
    let stored: HashSet<Uuid> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(
        stored.len(),
        read.len(),
        "an event landed twice ({conflicts} conflicts)"
    );
    outcomes.sort_by_key(|(_, appended, _)| appended.version);
    let mut next_version = 1;
    for (appended_ids, appended, _) in &outcomes {
        let n = appended_ids.len() as u64;
        assert_eq!(
            appended.version + 1 - n,
            next_version,
            "appends overlap or leave a hole: {appended:?}"
        );
        next_version = appended.version + 1;
        assert_stored_as_reported(&log, STREAM, appended_ids, *appended, STREAM);
    }
    assert_eq!(
        positions(&read),
        range(1, total),
        "positions are contiguous"
    );
    Ok(())
}

/// Writers append to their own streams while a reader follows `read_all` from its last seen
/// position: the reader sees every event exactly once, in increasing position order, no gaps.
pub async fn concurrent_streams_with_live_reader(
    store: Arc<dyn EventStore>,
) -> Result<(), StoreError> {
    const WRITERS: usize = 16;
    const EVENTS_PER_WRITER: usize = 30;
    const PAGE: usize = 7;
    let total = WRITERS * EVENTS_PER_WRITER;
    let start = Arc::new(Barrier::new(WRITERS + 1));

    let reader = {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        tokio::spawn(async move {
            start.wait().await;
            let deadline = Instant::now() + PROMPTLY + Duration::from_secs(20);
            let mut after = 0u64;
            let mut seen: Vec<RecordedEvent> = Vec::with_capacity(total);
            let mut ids = HashSet::new();
            let mut versions: HashMap<String, u64> = HashMap::new();
            while seen.len() < total {
                let page = store.read_all(after, PAGE).await?;
                if page.is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "the reader saw only {} of {total} events (stuck after position {after})",
                        seen.len()
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                assert!(page.len() <= PAGE, "a page of {PAGE} held {}", page.len());
                for e in page {
                    assert_eq!(
                        e.position,
                        after + 1,
                        "the reader, after position {after}, next saw {}: skipped or repeated",
                        e.position
                    );
                    assert!(
                        ids.insert(e.event_id),
                        "the reader saw {} twice",
                        e.event_id
                    );
                    let v = versions.entry(e.stream.clone()).or_insert(0);
                    assert_eq!(
                        e.version,
                        *v + 1,
                        "the reader saw {} version {} after version {}",
                        e.stream,
                        e.version,
                        *v
                    );
                    *v = e.version;
                    after = e.position;
                    seen.push(e);
                }
            }
            assert!(
                store.read_all(after, PAGE).await?.is_empty(),
                "more events than were appended"
            );
            Ok::<_, StoreError>(seen)
        })
    };

    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        spawn_writer(&mut writers, store, start, w, EVENTS_PER_WRITER);
    }
    let appends = join_all(writers).await?;
    let seen = match reader.await {
        Ok(outcome) => outcome?,
        Err(join) => match join.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(join) => panic!("the reader did not complete: {join}"),
        },
    };

    let log = store.read_all(0, ALL).await?;
    assert_eq!(
        seen, log,
        "what the live reader saw differs from the log read afterwards"
    );
    assert_eq!(positions(&log), range(1, total as u64));
    assert_eq!(store.head_position().await?, total as u64);
    for per_writer in appends {
        for (stream, appended_ids, appended) in per_writer {
            assert_stored_as_reported(&log, &stream, &appended_ids, appended, &stream);
        }
    }
    Ok(())
}

type WriterOutcome = Vec<(String, Vec<Uuid>, Appended)>;

fn spawn_writer(
    writers: &mut JoinSet<Result<WriterOutcome, StoreError>>,
    store: Arc<dyn EventStore>,
    start: Arc<Barrier>,
    w: usize,
    count: usize,
) {
    writers.spawn(async move {
        let stream = format!("writer-{w}");
        start.wait().await;
        let mut version = 0u64;
        let mut written = 0;
        let mut outcomes = Vec::new();
        let mut size = 1 + w % 3;
        while written < count {
            let n = size.min(count - written);
            let batch = events(&stream, n);
            let appended = store
                .append(&stream, ExpectedVersion::at(version), batch.clone())
                .await?;
            version = appended.version;
            assert_eq!(
                version,
                (written + n) as u64,
                "{stream}: version after {} events",
                written + n
            );
            written += n;
            outcomes.push((stream.clone(), ids(&batch), appended));
            size = size % 3 + 1;
            if w % 4 == 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(outcomes)
    });
}

// ---------------------------------------------------------------------------------------------
// Wake-ups

/// A subscriber is woken after an append and sees the head move to (at least) its last
/// position, never past what a reader can read.
pub async fn subscribe_sees_head_move(store: &dyn EventStore) -> Result<(), StoreError> {
    let mut early = store.subscribe();
    let start = *early.borrow_and_update();
    assert_eq!(start, 0, "a fresh store's subscription starts at head 0");

    let appended = store
        .append("stream", ExpectedVersion::NoStream, events("1", 2))
        .await?;
    // Copy the value out at once: a held watch borrow would block the store's sender.
    let head = match tokio::time::timeout(
        PROMPTLY,
        early.wait_for(|head| *head >= appended.last_position),
    )
    .await
    {
        Ok(Ok(head)) => *head,
        Ok(Err(_)) => panic!("the subscription closed while the store is open"),
        Err(_) => panic!(
            "the subscriber was not woken within {PROMPTLY:?} after an append up to position {}",
            appended.last_position
        ),
    };
    assert!(
        head <= store.head_position().await?,
        "the subscription announced position {head} past the readable head"
    );
    assert_eq!(
        positions(&store.read_all(0, ALL).await?).last().copied(),
        Some(head),
        "the announced head is readable"
    );

    // A second append wakes again, including a receiver that subscribed in between.
    let mut late = store.subscribe();
    let appended = store
        .append("other", ExpectedVersion::NoStream, events("2", 1))
        .await?;
    for (name, rx) in [("early", &mut early), ("late", &mut late)] {
        let woken = tokio::time::timeout(
            PROMPTLY,
            rx.wait_for(|head| *head >= appended.last_position),
        )
        .await
        .is_ok_and(|borrowed| borrowed.is_ok());
        assert!(
            woken,
            "the {name} subscriber was not woken by the second append"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Durability

/// Appends, drops the store, opens the same store again with `open` and reads everything back;
/// then appends again and checks positions and versions carry on. `open` must open the same
/// underlying store every time, empty the first time. Panics if it cannot open.
pub async fn survives_reopen<F, Fut, E>(mut open: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn EventStore>, E>>,
    E: Display,
{
    async fn reopen<F, Fut, E>(open: &mut F, when: &str) -> Arc<dyn EventStore>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Arc<dyn EventStore>, E>>,
        E: Display,
    {
        match open().await {
            Ok(store) => as_checked(store)
                .await
                .unwrap_or_else(|e| panic!("could not read the store {when}: {e}")),
            Err(e) => panic!("could not open the store {when}: {e}"),
        }
    }

    let store = reopen(&mut open, "the first time").await;
    assert_eq!(
        store.head_position().await?,
        0,
        "the store must start empty"
    );
    let sent = awkward_events();
    let mut versions_by_stream = BTreeMap::new();
    for (i, chunk) in sent.chunks(3).enumerate() {
        let stream = format!("durable-{}", i % 2);
        let appended = store
            .append(&stream, ExpectedVersion::Any, chunk.to_vec())
            .await?;
        versions_by_stream.insert(stream, appended.version);
    }
    let before = store.read_all(0, ALL).await?;
    let head = store.head_position().await?;
    assert_eq!(before.len(), sent.len());
    assert_eq!(head, sent.len() as u64);
    drop(store);

    let store = reopen(&mut open, "again").await;
    let after = store.read_all(0, ALL).await?;
    assert_eq!(after, before, "the log read after reopening differs");
    for (stored, e) in after.iter().zip(&sent) {
        assert_same_event(stored, e, "after reopening");
    }
    assert_eq!(
        store.head_position().await?,
        head,
        "the head after reopening"
    );
    for (stream, version) in &versions_by_stream {
        assert_eq!(
            store.stream_version(stream).await?,
            *version,
            "{stream}'s version after reopening"
        );
    }
    let stream = "durable-0";
    let Some(&version) = versions_by_stream.get(stream) else {
        panic!("nothing was appended to {stream}");
    };
    assert_conflict(
        store
            .append(stream, ExpectedVersion::NoStream, events("late", 1))
            .await,
        stream,
        ExpectedVersion::NoStream,
        version,
        "NoStream on a stream written before reopening",
    );
    let more = events("more", 2);
    let appended = store
        .append(stream, ExpectedVersion::Exact(version), more.clone())
        .await?;
    assert_eq!(
        appended,
        Appended {
            version: version + 2,
            first_position: head + 1,
            last_position: head + 2
        },
        "an append after reopening carries on the versions and positions"
    );
    let mut subscription = store.subscribe();
    let woken = tokio::time::timeout(
        PROMPTLY,
        subscription.wait_for(|h| *h >= appended.last_position),
    )
    .await
    .is_ok_and(|borrowed| borrowed.is_ok());
    assert!(
        woken,
        "the subscription after reopening did not reach the new head"
    );
    let expected_log = store.read_all(0, ALL).await?;
    drop(subscription);
    drop(store);

    let store = reopen(&mut open, "a third time").await;
    assert_eq!(
        store.read_all(0, ALL).await?,
        expected_log,
        "the log after the second reopening"
    );
    assert_eq!(store.head_position().await?, head + 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Several handles on one store

/// Several handles on one store (API instances on one PostgreSQL database; the server and the
/// command line on one SQLite file) append at once, racing on one stream and each writing its
/// own, while a reader on one handle follows `read_all`: every append lands once, versions and
/// positions stay contiguous, the reader skips nothing, and every handle reads the same log.
/// `open` must open the same underlying store every time, empty the first time. Panics if it
/// cannot open.
pub async fn handles_share_one_log<F, Fut, E>(mut open: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn EventStore>, E>>,
    E: Display,
{
    const HANDLES: usize = 3;
    const RACERS: usize = 12;
    const OWN_EVENTS: usize = 20;
    const MAX_RETRIES: usize = 10_000;
    const SHARED: &str = "shared";

    let mut handles: Vec<Arc<dyn EventStore>> = Vec::with_capacity(HANDLES);
    for h in 0..HANDLES {
        match open().await {
            Ok(store) => handles.push(as_checked(store).await?),
            Err(e) => panic!("could not open handle {h}: {e}"),
        }
    }
    for (h, store) in handles.iter().enumerate() {
        assert_eq!(
            store.head_position().await?,
            0,
            "handle {h}: the store must start empty"
        );
    }
    let racing_events: usize = (0..RACERS).map(|i| 1 + i % 2).sum();
    let total = racing_events + HANDLES * OWN_EVENTS;
    let start = Arc::new(Barrier::new(RACERS + HANDLES + 1));

    let reader = {
        let store = Arc::clone(&handles[0]);
        let start = Arc::clone(&start);
        tokio::spawn(async move {
            start.wait().await;
            let deadline = Instant::now() + PROMPTLY + Duration::from_secs(20);
            let mut after = 0u64;
            let mut seen: Vec<RecordedEvent> = Vec::with_capacity(total);
            while seen.len() < total {
                let page = store.read_all(after, 5).await?;
                if page.is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "the reader saw only {} of {total} events (stuck after position {after})",
                        seen.len()
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for e in page {
                    assert_eq!(
                        e.position,
                        after + 1,
                        "the reader, after position {after}, next saw {}: skipped or repeated",
                        e.position
                    );
                    after = e.position;
                    seen.push(e);
                }
            }
            Ok::<_, StoreError>(seen)
        })
    };

    let mut racers = JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(&handles[i % HANDLES]);
        let start = Arc::clone(&start);
        racers.spawn(async move {
            let batch = events(&format!("racer-{i}"), 1 + i % 2);
            start.wait().await;
            let mut conflicts = 0;
            loop {
                let version = store.stream_version(SHARED).await?;
                match store
                    .append(SHARED, ExpectedVersion::at(version), batch.clone())
                    .await
                {
                    Ok(appended) => return Ok((ids(&batch), appended)),
                    Err(StoreError::Conflict { actual, .. }) => {
                        assert!(
                            actual > version,
                            "racer {i}: conflict at version {version} reports actual {actual}"
                        );
                        conflicts += 1;
                        assert!(conflicts < MAX_RETRIES, "racer {i} conflicted too often");
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Err(e),
                }
            }
        });
    }
    let mut writers = JoinSet::new();
    for (h, store) in handles.iter().enumerate() {
        spawn_writer(
            &mut writers,
            Arc::clone(store),
            Arc::clone(&start),
            h,
            OWN_EVENTS,
        );
    }
    let raced = join_all(racers).await?;
    let written = join_all(writers).await?;
    let seen = match reader.await {
        Ok(outcome) => outcome?,
        Err(join) => match join.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(join) => panic!("the reader did not complete: {join}"),
        },
    };

    let log = handles[0].read_all(0, ALL).await?;
    assert_eq!(
        seen, log,
        "what the live reader saw differs from the log read afterwards"
    );
    assert_eq!(positions(&log), range(1, total as u64));
    for (h, store) in handles.iter().enumerate() {
        assert_eq!(
            store.read_all(0, ALL).await?,
            log,
            "handle {h} reads another log"
        );
        assert_eq!(
            store.head_position().await?,
            total as u64,
            "handle {h}'s head"
        );
        assert_eq!(
            store.stream_version(SHARED).await?,
            racing_events as u64,
            "handle {h}: the shared stream's version"
        );
    }
    let shared = handles[0].read_stream(SHARED, 1, ALL).await?;
    assert_eq!(versions(&shared), range(1, racing_events as u64));
    for (appended_ids, appended) in raced {
        assert_stored_as_reported(&log, SHARED, &appended_ids, appended, SHARED);
    }
    for per_writer in written {
        for (stream, appended_ids, appended) in per_writer {
            assert_stored_as_reported(&log, &stream, &appended_ids, appended, &stream);
        }
    }
    Ok(())
}
