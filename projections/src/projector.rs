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
}
