//! Read models written in the same SQLite transaction as the events that change them.
//!
//! SQLite lets one writer in at a time. With the projections written by a runner of their own,
//! every group of appends paid for two commits, each waiting for the other's write lock and
//! fsync, and every request waited for the second (the API reads its own writes). Projecting
//! inside the event writer's transaction makes it one commit: the events and their read models
//! become durable together, and a request's projection is visible the moment its append returns.
//!
//! The runner stays the catch-up path and the only one that parks an event a projector cannot
//! apply. The writer projects a group only when every projector's checkpoint stands exactly
//! where the group starts, and moves them with the same compare-and-set the runner uses, so the
//! two can never apply an event twice or skip one. When the checkpoints stand elsewhere (a
//! rebuild, a runner catching up) the hook writes nothing and the runner applies the group. When
//! a statement fails, the writer rolls the group back and commits its events alone, and the
//! runner parks the event that failed; the events commit regardless.

use std::sync::{Arc, PoisonError, RwLock};

use rusqlite::Connection;

use crate::{RecordedEvent, StoredRow};

/// Projects a group of freshly appended events inside the transaction that appends them.
/// Implemented by the read side (which this crate may not depend on) and installed at start-up.
pub trait InlineProjection: Send + Sync + 'static {
    /// Writes the read models for `appended`, the group's events in position order, the first of
    /// which follows position `after`. Runs inside the group's transaction.
    ///
    /// `Ok(Some(reached))`: the read models now include `reached`, once the transaction commits.
    /// `Ok(None)`: the read models were not at `after`; nothing was written, the runner will
    /// catch up. `Err`: a statement failed, perhaps after others were written; the writer rolls
    /// the transaction back and appends the group without its projection.
    fn apply(
        &self,
        connection: &Connection,
        after: u64,
        appended: &[RecordedEvent],
    ) -> Result<Option<u64>, String>;

    /// Called once the transaction in which `apply` returned `reached` has committed.
    fn committed(&self, reached: u64);
}

/// Where the read side installs its [`InlineProjection`] for the writer to find. Empty until a
/// projection runner is created; the last one installed is used.
#[derive(Clone, Default)]
pub struct InlineSlot(Arc<RwLock<Option<Arc<dyn InlineProjection>>>>);

impl InlineSlot {
    pub fn install(&self, projection: Arc<dyn InlineProjection>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(projection);
    }

    pub fn current(&self) -> Option<Arc<dyn InlineProjection>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Arc::clone)
    }
}

/// Runs `projection` for the rows a group just inserted. `Err`: the transaction must be rolled
/// back, since a statement may have failed after others were written.
pub(super) fn project_rows(
    connection: &Connection,
    projection: &dyn InlineProjection,
    after: u64,
    rows: Vec<StoredRow>,
) -> Result<Option<u64>, String> {
    if rows.is_empty() {
        return Ok(None);
    }
    // Decoded from the columns as stored, so the read models see exactly what a reader of the
    // log (the runner, a rebuild) would.
    let appended = rows
        .into_iter()
        .map(StoredRow::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    projection.apply(connection, after, &appended)
}
