//! What the lifecycle driver is sent and what it publishes.

use tokio::sync::oneshot;

use super::phase::{Event, Exit, ExitReason};
use crate::child::Watch;
use crate::error::UpgradeError;

/// What the driver is sent: an event, or an event with something attached.
pub(crate) enum Msg {
    /// A plain event.
    Event(Event),
    /// `upgrade()`: answered on the sender.
    Upgrade(oneshot::Sender<Result<u32, UpgradeError>>),
    /// An upgrade's outcome, with the handed-over successor.
    Upgraded(Result<Handover, UpgradeError>),
    /// A replacement's outcome.
    Rescued(Result<Handover, UpgradeError>),
}

/// A successor handed over, to be watched.
pub(crate) struct Handover {
    pub(crate) pid: u32,
    pub(crate) watch: Watch,
}

/// What the driver publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// Why the process shuts down, once it does (`shutdown()` resolves).
    pub(crate) exit: Option<ExitReason>,
    /// How the process exits, once it does.
    pub(crate) done: Option<Exit>,
}
