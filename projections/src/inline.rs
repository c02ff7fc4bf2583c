//! The projectors, run by the SQLite event writer inside the transaction that appends a group
//! (see `spse_totp_store::InlineProjection` for why). The statements and checkpoint
//! guards are the runner's own, so a table written here is the table a rebuild writes.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
use spse_totp_store::RecordedEvent;
use spse_totp_store::{advance_watch, InlineProjection};
use tokio::sync::watch;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::runner::unit;
use crate::sink::run_unit;

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

fn checkpoints(connection: &Connection) -> Result<HashMap<String, u64>, rusqlite::Error> {
    let mut statement =
        connection.prepare_cached("SELECT projector, position FROM projection_checkpoints")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
        ))
    })?;
    rows.collect()
}

impl InlineProjection for InlineProjector {
    fn apply(
        &self,
        connection: &Connection,
        after: u64,
        appended: &[RecordedEvent],
    ) -> Result<Option<u64>, String> {
        let Some(last) = appended.last().map(|e| e.position) else {
            return Ok(None);
        };
        let checkpoints = checkpoints(connection).map_err(|e| e.to_string())?;
        // A projector behind (a rebuild, a runner catching up after a failure) or ahead (another
        // process projected first) means these events are the runner's to apply, in order.
        if self
            .projectors
            .iter()
            .any(|p| checkpoints.get(p.name()) != Some(&after))
        {
            return Ok(None);
        }
        let decoded: Vec<Result<Decoded, String>> = appended.iter().map(Decoded::decode).collect();
        let projectors: Vec<&Arc<dyn Projector>> = self.projectors.iter().collect();
        let unit = unit(&projectors, appended, &decoded, &checkpoints)?;
        // The checkpoints were read in this same transaction, so a guard cannot miss; if one
        // did, an earlier guard may have written, and only a rollback undoes that.
        match run_unit(connection, &unit) {
            Ok(true) => Ok(Some(last)),
            Ok(false) => Err("a checkpoint moved within the writer's transaction".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn committed(&self, reached: u64) {
        advance_watch(&self.progress, reached);
    }
}
