//! The drain: in-flight tracking ([`Tracker`], [`ConnGuard`]), the `on_shutdown` hooks, and
//! the events that end a drain (`Drained`, `DrainTimeout`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::msg::Msg;
use super::phase::{Event, ExitReason};

/// An `on_shutdown` hook.
pub(crate) type Hook =
    Box<dyn Fn(ExitReason) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a service (rather than a bare `Upgrader`) drains: its hooks, its body, its timeout.
pub(crate) struct Plan {
    pub(crate) hooks: Vec<Hook>,
    pub(crate) timeout: Duration,
    /// True once the body has returned.
    pub(crate) body_done: watch::Receiver<bool>,
}

/// Counts in-flight connections, so that a drain ends as soon as they are done.
#[derive(Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

/// An in-flight connection; the drain waits until every guard is dropped.
#[must_use = "the connection counts as in flight until this guard is dropped"]
pub struct ConnGuard {
    tracker: Arc<Tracker>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.tracker.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

impl fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnGuard")
    }
}

impl Tracker {
    /// A guard counting one connection.
    pub(crate) fn track(self: &Arc<Self>) -> ConnGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        ConnGuard {
            tracker: self.clone(),
        }
    }

    /// How many are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until none is in flight.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Shutdown begins: for a service (`plan` is set), run the hooks, wait for the body and the
/// connections in flight (then `Drained`), and arm the drain timeout (then `DrainTimeout`).
pub(crate) fn begin(
    plan: Option<Arc<Plan>>,
    tracker: Arc<Tracker>,
    tx: mpsc::UnboundedSender<Msg>,
    reason: ExitReason,
) {
    let Some(plan) = plan else {
        tracing::info!(?reason, "shutting down");
        return;
    };
    tracing::info!(
        ?reason,
        drain_timeout_ms = plan.timeout.as_millis() as u64,
        "shutting down"
    );
    let timeout = plan.timeout;
    let timer = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let _ = timer.send(Msg::Event(Event::DrainTimeout));
    });
    tokio::spawn(async move {
        for hook in &plan.hooks {
            hook(reason).await;
        }
        let mut body_done = plan.body_done.clone();
        let _ = body_done.wait_for(|done| *done).await;
        tracker.wait_idle().await;
        let _ = tx.send(Msg::Event(Event::Drained));
    });
}
