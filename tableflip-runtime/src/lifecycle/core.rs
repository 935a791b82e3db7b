//! The state an upgrader shares with the lifecycle driver: what the process inherited, its
//! descriptors, its readiness gate, the channel to the driver and what the driver publishes.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::drain::{Plan, Tracker};
use super::msg::{Msg, Published};
use crate::env::Startup;
use crate::fds::Fds;
use crate::parent::Parent;
use crate::systemd::Notifier;

/// Has this process said ready? Decided under one lock, so that a stop before ready and
/// `ready()` cannot both win.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Pending,
    Ready,
    Abandoned,
}

/// The upgrader's state, shared with the lifecycle driver (which alone changes the phase).
pub(crate) struct Inner {
    pub(crate) startup: &'static Startup,
    pub(crate) timeout: Duration,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) parent: Option<Parent>,
    pub(crate) fds: Fds,
    pub(crate) gate: Mutex<Gate>,
    /// The names pipes of successors: closed only when this process exits.
    pub(crate) keep_open: Mutex<Vec<OwnedFd>>,
    /// systemd's notification socket, if `NOTIFY_SOCKET` is set.
    pub(crate) systemd: Notifier,
    /// Events for the driver.
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
    /// What the driver publishes.
    pub(crate) published: watch::Sender<Published>,
    /// Connections in flight.
    pub(crate) tracker: Arc<Tracker>,
    /// What a service drains (unset for a bare upgrader).
    pub(crate) drain: OnceLock<Arc<Plan>>,
    /// The user's health check, run before each watchdog ping.
    pub(crate) health: super::health::Health,
}

/// What differs between an upgrader's state and the test double's; the rest starts empty.
pub(crate) struct Setup {
    pub(crate) startup: &'static Startup,
    pub(crate) timeout: Duration,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) parent: Option<Parent>,
    pub(crate) fds: Fds,
    pub(crate) systemd: Notifier,
    pub(crate) tx: mpsc::UnboundedSender<Msg>,
}

impl Inner {
    /// The state at start-up: not ready, nothing published, nothing in flight.
    pub(crate) fn new(setup: Setup) -> Inner {
        let Setup {
            startup,
            timeout,
            pid_file,
            parent,
            fds,
            systemd,
            tx,
        } = setup;
        Inner {
            startup,
            timeout,
            pid_file,
            parent,
            fds,
            gate: Mutex::new(Gate::Pending),
            keep_open: Mutex::new(Vec::new()),
            systemd,
            tx,
            published: watch::channel(Published::default()).0,
            tracker: Arc::default(),
            drain: OnceLock::new(),
            health: Default::default(),
        }
    }

    /// Connections in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// Abandons the start if this process has not said ready: the parent (if any) sees
    /// its ready pipe closed without the ready byte. False if ready was already said.
    pub(crate) fn abandon_start(&self) -> bool {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if *gate != Gate::Pending {
            return false;
        }
        *gate = Gate::Abandoned;
        if let Some(parent) = &self.parent {
            parent.abandon();
        }
        true
    }
}

impl Inner {
    /// Holds a successor's names pipe open until this process exits (it tells the successor
    /// we are alive).
    pub(crate) fn keep_open(&self, names: OwnedFd) {
        self.keep_open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(names);
    }
}
