//! What a projector is: a name, the tables it owns, and the statements one event turns into.

use spse_totp_store::RecordedEvent;

use crate::event::Decoded;
use crate::statement::Statement;

pub trait Projector: Send + Sync + 'static {
    /// The checkpoint's key. Renaming it rebuilds the projection.
    fn name(&self) -> &'static str;

    /// The tables this projector alone writes, emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];

    /// The writes one event makes: a pure function, run by the runner in its transaction.
    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement>;

    /// The writes of several events, in position order, with the same effect as each event's
    /// [`project`](Projector::project) in turn. A projector whose rows do not depend on each
    /// other inserts them together (see [`rows_in_chunks`](crate::statement::rows_in_chunks)), and
    /// gives the terms they name their ids in one statement rather than one an event: the event
    /// writer projects a whole group at once, under the head lock.
    fn project_batch(&self, events: &[(&RecordedEvent, &Decoded)]) -> Vec<Statement> {
        events
            .iter()
            .flat_map(|(recorded, decoded)| self.project(recorded, decoded))
            .collect()
    }
}
