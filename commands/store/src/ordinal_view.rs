//! For the conformance suite: an adapter whose positions only increase (EventStoreDB's `$all`
//! positions are byte offsets) seen through consecutive ordinals 1, 2, 3, ..., so that every
//! check, written for dense positions, applies to it unchanged.
//!
//! The view also checks the one promise sparse positions must keep: the log only grows at its
//! end. Each time it re-reads the log, the positions it knew must still be there, in the same
//! order, with new ones only after them; an event appearing between known positions is exactly
//! what would make a reader skip it, and fails the check.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::advance_watch;
use crate::{Appended, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};

pub struct OrdinalView {
    inner: Arc<dyn EventStore>,
    /// The inner positions in log order: ordinal N is `known[N - 1]`.
    known: Mutex<Vec<u64>>,
    head: Arc<watch::Sender<u64>>,
}

fn lock(known: &Mutex<Vec<u64>>) -> std::sync::MutexGuard<'_, Vec<u64>> {
    known
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OrdinalView {
    pub async fn wrap(inner: Arc<dyn EventStore>) -> Result<Arc<dyn EventStore>, StoreError> {
        let view = Arc::new(OrdinalView {
            inner: Arc::clone(&inner),
            known: Mutex::new(Vec::new()),
            head: Arc::new(watch::channel(0).0),
        });
        let head = view.refresh().await?;
        view.head.send_replace(head);
        // Follow the inner store's wake-ups, in ordinals.
        let follower = Arc::downgrade(&view);
        let mut woken = inner.subscribe();
        tokio::spawn(async move {
            while woken.changed().await.is_ok() {
                let Some(view) = follower.upgrade() else {
                    return;
                };
                if let Ok(head) = view.refresh().await {
                    advance_watch(&view.head, head);
                }
            }
        });
        Ok(view)
    }

    /// Re-reads the whole log; returns the ordinal of its last event.
    async fn refresh(&self) -> Result<u64, StoreError> {
        let mut positions = Vec::new();
        let mut after = 0;
        loop {
            let page = self.inner.read_all(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            positions.extend(page.iter().map(|e| e.position));
        }
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "read_all returned positions that do not increase"
        );
        let mut known = lock(&self.known);
        // A concurrent refresh may have read a longer log already: one of the two readings must
        // extend the other.
        assert!(
            positions.starts_with(&known) || known.starts_with(&positions),
            "the log changed before its end: an event appeared between positions a reader had \
             already passed"
        );
        if positions.len() > known.len() {
            *known = positions;
        }
        Ok(known.len() as u64)
    }

    fn ordinal_of(&self, position: u64) -> Option<u64> {
        let known = lock(&self.known);
        known.binary_search(&position).ok().map(|i| i as u64 + 1)
    }

    async fn to_ordinal(&self, position: u64) -> Result<u64, StoreError> {
        if let Some(ordinal) = self.ordinal_of(position) {
            return Ok(ordinal);
        }
        self.refresh().await?;
        self.ordinal_of(position)
            .ok_or_else(|| StoreError::Corrupt {
                position,
                reason: "a position that read_all does not return".to_owned(),
            })
    }

    async fn renumber(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut renumbered = Vec::with_capacity(events.len());
        for mut event in events {
            event.position = self.to_ordinal(event.position).await?;
            renumbered.push(event);
        }
        Ok(renumbered)
    }

    /// The inner position of ordinal `ordinal` (0 for 0).
    async fn position_of(&self, ordinal: u64) -> Result<u64, StoreError> {
        if ordinal == 0 {
            return Ok(0);
        }
        let index = usize::try_from(ordinal - 1).unwrap_or(usize::MAX);
        if let Some(position) = lock(&self.known).get(index) {
            return Ok(*position);
        }
        self.refresh().await?;
        let known = lock(&self.known);
        // Past the end: after everything there is.
        Ok(known.get(index).or(known.last()).copied().unwrap_or(0))
    }
}

#[async_trait]
impl EventStore for OrdinalView {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let appended = self.inner.append(stream, expected, events).await?;
        Ok(Appended {
            version: appended.version,
            first_position: self.to_ordinal(appended.first_position).await?,
            last_position: self.to_ordinal(appended.last_position).await?,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, from_version, limit).await?;
        self.renumber(events).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = self.position_of(after).await?;
        let events = self.inner.read_all(from, limit).await?;
        self.renumber(events).await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head = self.inner.head_position().await?;
        if head == 0 {
            return Ok(0);
        }
        self.to_ordinal(head).await
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn refuses_duplicate_ids(&self) -> bool {
        self.inner.refuses_duplicate_ids()
    }
}
