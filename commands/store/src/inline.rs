//! Read models written in the same transaction as the events that change them, on SQLite and on
//! PostgreSQL.
//!
//! With the projections written by a runner of their own, every group of appends paid for two
//! commits (on SQLite each waiting for the other's write lock and fsync; on PostgreSQL a second
//! transaction and WAL flush), and every request waited for the second (the API reads its own
//! writes). Projecting inside the event writer's transaction makes it one commit: the events and
//! their read models become durable together, and a request's projection is visible the moment
//! its append returns.
//!
//! The runner stays the catch-up path and the only one that parks an event a projector cannot
//! apply. The read side hands the writer a [`Unit`] whose guards move every projector's
//! checkpoint from where the group starts to its last position, with the same compare-and-set
//! the runner uses, so the two can never apply an event twice or skip one, whichever gets there
//! first and however many instances share the database. Each adapter runs the unit behind a
//! savepoint in the group's transaction: when a guard changes no row (the checkpoints stand
//! elsewhere: a rebuild, a runner catching up, another process projecting) or a statement fails,
//! it rolls back to the savepoint, the events commit without their projection, and the runner
//! applies the group (parking the event that failed).

use std::sync::{Arc, PoisonError, RwLock};

use crate::statement::Unit;
use crate::{RecordedEvent, StoredRow};

/// Projects a group of freshly appended events inside the transaction that appends them.
/// Implemented by the read side (which this crate may not depend on) and installed at start-up.
pub trait InlineProjection: Send + Sync + 'static {
    /// The read models' writes for `appended`, the group's events in position order, the first
    /// of which follows position `after`. The unit's guards must move every projector's
    /// checkpoint from `after` to the last event's position, so that they all change a row only
    /// when every read model stands exactly at `after`.
    ///
    /// `Err`: the group cannot be projected here (an event does not decode); the runner will.
    fn unit(&self, after: u64, appended: &[RecordedEvent]) -> Result<Unit, String>;

    /// Called once the transaction in which the unit's guards all held has committed: the read
    /// models now include `reached`.
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

/// The unit that projects the rows a group just inserted, and the position it reaches.
/// `None`: nothing to project, or nothing the writer can project (logged; the runner will).
pub(super) fn unit_for_rows(
    projection: &dyn InlineProjection,
    after: u64,
    rows: Vec<StoredRow>,
) -> Option<(Unit, u64)> {
    let reached = u64::try_from(rows.last()?.position).ok()?;
    // Decoded from the columns as stored, so the read models see exactly what a reader of the
    // log (the runner, a rebuild) would.
    let built = rows
        .into_iter()
        .map(StoredRow::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
        .and_then(|appended| projection.unit(after, &appended));
    match built {
        Ok(unit) => Some((unit, reached)),
        Err(reason) => {
            tracing::warn!(%reason, "cannot project a group inline; the runner will project it");
            None
        }
    }
}
