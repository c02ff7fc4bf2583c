//! The projectors, run by the event writer (SQLite and PostgreSQL) inside the transaction that
//! appends a group (see `spse_totp_store::InlineProjection` for why). The statements and
//! checkpoint guards are the runner's own, so a table written here is the table a rebuild writes.

use std::collections::HashMap;
use std::sync::Arc;

use spse_totp_store::statement::Unit;
use spse_totp_store::RecordedEvent;
use spse_totp_store::{advance_watch, InlineProjection};
use tokio::sync::watch;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::runner::unit;

pub(crate) struct InlineProjector {
    projectors: Vec<Arc<dyn Projector>>,
    /// The runner's progress: what read-your-writes waits and long-polls watch.
    progress: Arc<watch::Sender<u64>>,
}

impl InlineProjector {
    pub(crate) fn new(
        projectors: Vec<Arc<dyn Projector>>,
        progress: Arc<watch::Sender<u64>>,
    ) -> Self {
        InlineProjector {
            projectors,
            progress,
        }
    }
}

impl InlineProjection for InlineProjector {
    fn unit(&self, after: u64, appended: &[RecordedEvent]) -> Result<Unit, String> {
        // Every checkpoint must stand at `after`: the guards compare-and-set each from there, so
        // a projector behind (a rebuild, a runner catching up) or ahead (another process
        // projected first) makes a guard miss, and the writer keeps none of the unit.
        let checkpoints: HashMap<String, u64> = self
            .projectors
            .iter()
            .map(|p| (p.name().to_owned(), after))
            .collect();
        let decoded: Vec<Result<Decoded, String>> = appended.iter().map(Decoded::decode).collect();
        let projectors: Vec<&Arc<dyn Projector>> = self.projectors.iter().collect();
        unit(&projectors, appended, &decoded, &checkpoints)
    }

    fn committed(&self, reached: u64) {
        advance_watch(&self.progress, reached);
    }
}
