//! The one task that owns the [`Phase`]: every event arrives on its channel, goes through
//! [`Phase::on`], and the effects are carried out here. Everything else sends it events or
//! watches what it publishes.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::core::Inner;
use super::msg::{Handover, Msg};
use super::phase::ExitReason;
use super::phase::{Effect, Event, Exit, Facts, Phase, Refusal};
use super::{drain, notify};
use crate::child::{self, Gone};
use crate::error::{UpgradeError, chain};

/// The driver's own state, beside the phase.
struct Driver {
    core: Arc<Inner>,
    phase: Phase,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// The `upgrade()` call waiting for the upgrade in flight.
    waiter: Option<oneshot::Sender<Result<u32, UpgradeError>>>,
    /// The `upgrade()` call being handled.
    asking: Option<oneshot::Sender<Result<u32, UpgradeError>>>,
    /// The outcome of the upgrade or replacement being handled.
    outcome: Option<Result<u32, UpgradeError>>,
    /// The successor to watch next.
    handed: Option<Handover>,
    /// Cancels the upgrade in flight.
    cancel: Option<watch::Sender<bool>>,
    /// When this process started (for the cold start's `EXTEND_TIMEOUT_USEC=`), and when
    /// the upgrade in flight began.
    born: Instant,
    upgrade_started: Option<Instant>,
    /// The parent process at start-up: for a successor, the shim that started it, until the
    /// old process releases it at the handover.
    first_ppid: nix::unistd::Pid,
}

/// Starts the driver for `core` on the current tokio runtime.
pub(crate) fn spawn(core: Arc<Inner>, rx: mpsc::UnboundedReceiver<Msg>) {
    if let Some(parent) = &core.parent {
        let tx = core.tx.clone();
        let exited = parent.exited();
        tokio::spawn(async move {
            let mut exited = exited;
            let _ = exited.wait_for(Option::is_some).await;
            let _ = tx.send(Msg::Event(Event::ParentExited));
        });
    }
    let driver = Driver {
        core,
        phase: Phase::Starting,
        rx,
        waiter: None,
        asking: None,
        outcome: None,
        handed: None,
        cancel: None,
        born: Instant::now(),
        upgrade_started: None,
        first_ppid: nix::unistd::getppid(),
    };
    notify::spawn(driver.core.clone());
    tokio::spawn(driver.run());
}

impl Driver {
    async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            let event = match msg {
                Msg::Event(e) => e,
                Msg::Upgrade(reply) => {
                    self.asking = Some(reply);
                    Event::UpgradeRequest
                }
                Msg::Upgraded(result) => {
                    let result = self.take_handover(result);
                    Event::UpgradeDone(result)
                }
                Msg::Rescued(result) => {
                    let result = self.take_handover(result);
                    Event::RescueDone(result)
                }
            };
            self.handle(event);
            // An `upgrade()` call the transition did not answer or keep waits for the
            // upgrade it started.
            if let Some(reply) = self.asking.take() {
                self.waiter = Some(reply);
            }
        }
    }

    /// Does systemd take this process's messages? A successor becomes the main process at
    /// its parent's handover, which releases it from the shim (it is re-parented) right
    /// before it sends `MAINPID=`.
    fn is_main_process(&self) -> bool {
        match &self.core.parent {
            None => true,
            Some(p) => p.has_exited() || nix::unistd::getppid() != self.first_ppid,
        }
    }

    fn take_handover(
        &mut self,
        result: Result<Handover, UpgradeError>,
    ) -> Result<u32, UpgradeError> {
        match result {
            Ok(h) => {
                let pid = h.pid;
                self.handed = Some(h);
                Ok(pid)
            }
            Err(e) => Err(e),
        }
    }

    /// One event through the transition; follow-up events are handled at once.
    fn handle(&mut self, first: Event) {
        let mut queue = vec![first];
        while let Some(event) = queue.pop() {
            let facts = Facts {
                parent_alive: self.core.parent.as_ref().is_some_and(|p| !p.has_exited()),
                main_process: self.is_main_process(),
                under_systemd: self.core.systemd.is_active(),
            };
            let before = self.phase;
            let (after, effects) = before.on(&event, facts);
            if before != after {
                tracing::debug!(from = before.name(), to = after.name(), ?event, "lifecycle");
            }
            self.phase = after;
            if let Event::UpgradeDone(r) | Event::RescueDone(r) = event {
                self.outcome = Some(r);
            }
            for effect in effects {
                if let Some(next) = self.carry_out(effect, &before) {
                    queue.push(next);
                }
            }
        }
    }

    fn carry_out(&mut self, effect: Effect, before: &Phase) -> Option<Event> {
        let core = &self.core;
        match effect {
            Effect::Abandon => {
                if core.abandon_start() {
                    tracing::warn!(
                        pid = std::process::id(),
                        "stopped before ready: this process will not say ready"
                    );
                    return Some(Event::Aborted);
                }
            }
            Effect::NotifyReloading => {
                tracing::info!(
                    "upgrade signal: the previous process still drains; upgrading once it has exited"
                );
                core.systemd.reloading();
            }
            Effect::StartUpgrade { reloading_sent } => {
                let (cancel, cancelled) = watch::channel(false);
                self.cancel = Some(cancel);
                self.upgrade_started = Some(Instant::now());
                // Before the status line that follows this effect.
                if !reloading_sent {
                    core.systemd.reloading();
                }
                let core = core.clone();
                tokio::spawn(async move {
                    let result = guarded_upgrade(core.clone(), cancelled, "upgrade").await;
                    let _ = core.tx.send(Msg::Upgraded(result));
                });
            }
            Effect::CancelUpgrade => {
                if let Some(cancel) = &self.cancel {
                    cancel.send_replace(true);
                }
            }
            Effect::Refuse(refusal) => {
                if refusal == Refusal::ParentAlive {
                    // systemd may be waiting for this reload (Type=notify-reload): end it.
                    core.systemd.reloading();
                    core.systemd
                        .upgrade_failed(&UpgradeError::ParentAlive.to_string());
                }
                if let Some(reply) = self.asking.take() {
                    let _ = reply.send(Err(refusal.error()));
                }
            }
            Effect::IgnoreUpgradeSignal(refusal) => match refusal {
                Refusal::InProgress => {
                    tracing::info!("upgrade signal ignored: an upgrade is already running")
                }
                Refusal::NotReady => tracing::info!("upgrade signal ignored: not ready yet"),
                other => tracing::info!(
                    reason = %other.error(),
                    "no upgrade: this process is shutting down"
                ),
            },
            Effect::UpgradeFailed => {
                if let Some(Err(e)) = &self.outcome {
                    core.systemd.upgrade_failed(&chain(e));
                    if self.waiter.is_none() {
                        tracing::error!(error = %chain(e), "upgrade failed; still serving");
                    }
                }
            }
            Effect::AnswerWaiter => {
                let outcome = self.outcome.take();
                if let Some(Ok(pid)) = &outcome
                    && self.waiter.is_none()
                {
                    tracing::info!(child_pid = pid, "handed over to the new process");
                }
                if matches!(
                    before,
                    Phase::Upgrading {
                        cancelled: true,
                        ..
                    }
                ) && matches!(outcome, Some(Err(_)))
                {
                    tracing::info!(
                        reason = %UpgradeError::Terminating,
                        "no upgrade: this process is shutting down"
                    );
                }
                if let (Some(reply), Some(outcome)) = (self.waiter.take(), outcome) {
                    let outcome = match outcome {
                        Err(_)
                            if matches!(
                                before,
                                Phase::Upgrading {
                                    cancelled: true,
                                    ..
                                }
                            ) =>
                        {
                            Err(UpgradeError::Terminating)
                        }
                        other => other,
                    };
                    let _ = reply.send(outcome);
                }
            }
            Effect::BeginDrain(reason) => {
                if reason == ExitReason::Stopped {
                    if let Phase::Serving { .. } | Phase::Upgrading { .. } = before {
                        tracing::info!("stopping: draining");
                    }
                    core.systemd.stopping();
                    core.fds.close_and_remove_used();
                }
                core.published.send_modify(|p| p.exit = Some(reason));
                drain::begin(
                    core.drain.get().cloned(),
                    core.tracker.clone(),
                    core.tx.clone(),
                    reason,
                );
            }
            Effect::TellParentStopping => {
                if let Some(parent) = &core.parent {
                    parent.send_stopping();
                }
            }
            Effect::WatchSuccessor => {
                if let Some(h) = self.handed.take() {
                    let tx = core.tx.clone();
                    tokio::spawn(async move {
                        let gone = h.watch.gone().await;
                        let _ = tx.send(Msg::Event(Event::SuccessorGone(gone)));
                    });
                }
            }
            Effect::StartRescue => {
                tracing::error!(
                    "the successor exited abnormally while this process still holds the \
                     sockets; starting the program again"
                );
                let core = core.clone();
                tokio::spawn(async move {
                    // Never cancelled: a replacement outlives this process if need be.
                    let (_keep, cancelled) = watch::channel(false);
                    let result = guarded_upgrade(core.clone(), cancelled, "replacement").await;
                    let _ = core.tx.send(Msg::Rescued(result));
                    drop(_keep);
                });
            }
            Effect::SuccessorLeft(gone) => match gone {
                Gone::Crashed => tracing::warn!(
                    "the successor exited abnormally; not replacing it (this process was \
                     stopped, systemd supervises it, or it was replaced too often)"
                ),
                Gone::Stopped => tracing::info!("the successor exited: it was stopped"),
                Gone::Unknown => tracing::info!(
                    "the successor exited (it does not say whether on purpose; left alone)"
                ),
            },
            Effect::RescueOutcome => match &self.outcome {
                Some(Ok(pid)) => {
                    tracing::info!(child_pid = pid, "a new successor replaced the crashed one")
                }
                Some(Err(e)) => {
                    tracing::error!(error = %chain(e), "can't replace the crashed successor")
                }
                None => {}
            },
            Effect::DrainContinues(signal) => tracing::info!(
                %signal,
                in_flight = core.in_flight(),
                "stop signal: the drain goes on; another one forces the exit"
            ),
            Effect::Status(line) => core.systemd.status(&notify::status_text(line, core)),
            Effect::ExtendTimeout => {
                let since = match before {
                    Phase::Starting => self.born,
                    _ => self.upgrade_started.unwrap_or(self.born),
                };
                let period = notify::period(core.systemd.watchdog_interval());
                if let Some(by) = notify::extension(period, since.elapsed(), core.timeout) {
                    core.systemd.extend_timeout(by);
                }
            }
            Effect::Watchdog => core.systemd.watchdog(),
            Effect::Exit(exit) => {
                match exit {
                    Exit::Forced(signal) => tracing::warn!(
                        %signal,
                        in_flight = core.in_flight(),
                        "second stop signal: exiting now"
                    ),
                    Exit::DrainTimeout => tracing::warn!(
                        in_flight = core.in_flight(),
                        "drain timeout: exiting with work in flight"
                    ),
                    Exit::Drained | Exit::Aborted(_) => {}
                }
                core.published.send_modify(|p| {
                    p.exit.get_or_insert(ExitReason::Stopped);
                    p.done = Some(exit);
                });
            }
        }
        None
    }
}

/// [`upgrade`], guarded: should it panic (a bug), the upgrade fails with an error instead of
/// leaving the state machine waiting forever for its outcome, and the service goes on
/// serving and can be upgraded again. It runs in the caller's task (a task of its own would
/// cost a hop between threads, at the start of every upgrade).
async fn guarded_upgrade(
    core: Arc<Inner>,
    cancelled: watch::Receiver<bool>,
    what: &'static str,
) -> Result<Handover, UpgradeError> {
    match catch_panic(async move { upgrade(&core, cancelled, what).await }).await {
        Ok(result) => result,
        Err(panic) => Err(UpgradeError::Io(std::io::Error::other(format!(
            "internal error while upgrading: {panic}"
        )))),
    }
}

/// Runs `fut`; a panic while it is polled becomes `Err` with the panic's message (the panic
/// hook has already reported it), and `fut` is not polled again.
async fn catch_panic<F: std::future::Future>(fut: F) -> Result<F::Output, String> {
    use futures_util::FutureExt;
    // Unwind safety: after a panic the future is dropped unpolled, and what it shared with
    // the rest of the process (the core) is only behind locks that recover from poisoning.
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned())
        })
}

/// Starts a successor with everything in use and waits until it is ready (then hands it
/// over and tells systemd), fails, times out or is cancelled.
async fn upgrade(
    core: &Inner,
    cancelled: watch::Receiver<bool>,
    what: &'static str,
) -> Result<Handover, UpgradeError> {
    let span = tracing::info_span!("upgrade", pid = std::process::id(), what);
    async {
        let started = Instant::now();
        let files = core.fds.snapshot();
        tracing::info!(files = files.len(), "starting the new process");
        let tx = core.tx.clone();
        let on_started = move |pid| {
            let _ = tx.send(Msg::Event(Event::SuccessorStarted(pid)));
        };
        // Under systemd (or the PID 1 supervisor) the successor must be re-parented before
        // `MAINPID=` names it.
        let reparent_first = core.systemd.is_active();
        let ready = child::upgrade(
            core.startup,
            files,
            core.timeout,
            cancelled,
            on_started,
            reparent_first,
        )
        .await?;
        core.keep_open(ready.names);
        // systemd must know the new main process (now its child) before this one drains.
        let status = format!("serving (pid {})", ready.pid);
        core.systemd
            .handover(ready.pid, ready.watch.pidfd(), &status)
            .await;
        tracing::info!(
            child_pid = ready.pid,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "upgrade complete; this process should now drain and exit"
        );
        Ok(Handover {
            pid: ready.pid,
            watch: ready.watch,
        })
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod catch_panic_tests {
    use super::catch_panic;

    #[tokio::test]
    async fn a_panic_while_polled_is_an_error_with_its_message() {
        let out = catch_panic(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("upgrade bug {}", 42);
            }
            7
        })
        .await;
        assert_eq!(out, Err("upgrade bug 42".to_owned()));
        let fine = catch_panic(async {
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert_eq!(fine, Ok(7));
    }
}
