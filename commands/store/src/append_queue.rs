//! The queue in front of a database's one writer. Appends from every task of the instance wait
//! here, so the writer can take several at once and commit them as one group: one transaction,
//! one fsync, for as many appends as arrived while the previous group was committing.

use tokio::sync::{mpsc, oneshot};

use crate::{Appended, ExpectedVersion, NewEvent, StoreError};

/// One caller's append, and where its outcome goes.
pub(crate) struct AppendRequest {
    pub(crate) stream: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The callers' end of the queue; the writer holds the receiving end.
pub(crate) struct AppendQueue {
    sender: mpsc::Sender<AppendRequest>,
}

impl AppendQueue {
    /// A queue holding up to `capacity` waiting appends; callers beyond that wait to enqueue.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<AppendRequest>) {
        let (sender, requests) = mpsc::channel(capacity);
        (AppendQueue { sender }, requests)
    }

    /// Hands the append to the writer and waits for its group to commit (or fail).
    pub(crate) async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        self.sender
            .send(request)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        outcome.await.map_err(|_| StoreError::WriterGone)?
    }
}
