//! The per-process state of connection handover (see `conn.rs`), kept in
//! [`Fds`](crate::Fds): a leaf that both `fds.rs` (which records what an upgrade passes on)
//! and `conn.rs` (which runs the release channel) use.

use std::collections::{HashMap, HashSet};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::key::{FdKind, Key};

/// What the previous process released so far.
#[derive(Default)]
pub(crate) struct Released {
    /// Per connection: the bytes it had read but not processed.
    pub(crate) unread: HashMap<Key, Vec<u8>>,
    /// Everything is released (the channel ended, or the previous process is gone).
    pub(crate) all: bool,
}

/// The per-process state of connection handover, kept in [`Fds`](crate::Fds).
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

#[derive(Default)]
/// What [`Registry`] guards.
pub(crate) struct State {
    pub(crate) started: bool,
    /// Releases from the previous process.
    pub(crate) incoming: Option<watch::Receiver<Released>>,
    /// The channel to the next process (its other end is among the passed files).
    pub(crate) writer: Option<UnixStream>,
    /// Live [`ConnHandoff`](crate::ConnHandoff)s.
    pub(crate) open: usize,
    /// This process handed over: the channel closes when `open` reaches 0.
    pub(crate) handed_over: bool,
    /// The connections the last upgrade passed on (`Fds::snapshot`).
    pub(crate) passed: HashSet<Key>,
}

impl Registry {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upgrade is passing these descriptors on.
    pub(crate) fn passing<'k>(&self, keys: impl Iterator<Item = &'k Key>) {
        self.lock().passed = keys.filter(|k| k.kind == FdKind::Conn).cloned().collect();
    }
}
