//! The lifecycle of one process: the phases and their transitions (`phase.rs`,
//! docs/lifecycle.md's diagram as code), the one task that owns them (`driver.rs`), the
//! state it shares with the upgrader (`core.rs`) and the drain (`drain.rs`).

pub(crate) mod core;
pub(crate) mod drain;
pub(crate) mod driver;
pub(crate) mod health;
pub(crate) mod msg;
pub(crate) mod notify;
pub(crate) mod phase;
#[cfg(test)]
mod tests;
