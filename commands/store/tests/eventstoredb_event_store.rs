//! The EventStoreDB / KurrentDB adapter against the event store conformance suite, on the server
//! named by `SPSE_TOTP_TEST_EVENTSTORE_URL` (for example `esdb://127.0.0.1:2113?tls=false`),
//! each check in a stream namespace of its own. Built only with the `eventstoredb` feature;
//! without it, or without a server, the tests say they were skipped.

use std::io::Write;

const TEST_EVENTSTORE_URL: &str = "SPSE_TOTP_TEST_EVENTSTORE_URL";

fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

#[cfg(not(feature = "eventstoredb"))]
#[test]
fn eventstoredb_passes_the_conformance_suite() {
    skipped(
        "eventstoredb_passes_the_conformance_suite",
        &format!(
            "built without the eventstoredb feature (run cargo test -p spse-totp-commands \
             --features eventstoredb with {TEST_EVENTSTORE_URL} set)"
        ),
    );
}

#[cfg(feature = "eventstoredb")]
mod with_server {
    use std::sync::Arc;

    use spse_totp_store::conformance;
    use spse_totp_store::EventStoreDbStore;
    use spse_totp_store::{EventStore, StoreError};
    use uuid::Uuid;

    use super::{skipped, TEST_EVENTSTORE_URL};

    fn server() -> Option<String> {
        std::env::var(TEST_EVENTSTORE_URL)
            .ok()
            .filter(|u| !u.is_empty())
    }

    async fn fresh(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
        let namespace = format!("t{}-", Uuid::new_v4().simple());
        Ok(Arc::new(EventStoreDbStore::connect(url, &namespace).await?))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eventstoredb_passes_the_conformance_suite() {
        let Some(url) = server() else {
            return skipped(
                "eventstoredb_passes_the_conformance_suite",
                &format!("set {TEST_EVENTSTORE_URL}=esdb://HOST:2113?tls=false to run it"),
            );
        };
        conformance::run_all(|| fresh(&url)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eventstoredb_handles_share_one_log() {
        let Some(url) = server() else {
            return skipped(
                "eventstoredb_handles_share_one_log",
                &format!("set {TEST_EVENTSTORE_URL}=esdb://HOST:2113?tls=false to run it"),
            );
        };
        let namespace = format!("t{}-", Uuid::new_v4().simple());
        conformance::handles_share_one_log(|| async {
            Ok::<Arc<dyn EventStore>, StoreError>(Arc::new(
                EventStoreDbStore::connect(&url, &namespace).await?,
            ))
        })
        .await
        .expect("the shared-log check hit a store error");
    }
}
