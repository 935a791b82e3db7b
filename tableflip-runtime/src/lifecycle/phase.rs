//! The lifecycle as one state machine: the [`Phase`] a process is in, the [`Event`]s that
//! move it, and the [`Effect`]s each transition has. [`Phase::on`] is docs/lifecycle.md's
//! diagram as code: every transition is one arm. The driver (`driver.rs`) owns the phase,
//! feeds it every event and carries out the effects; nothing else changes it.

use crate::child::Gone;
use crate::error::UpgradeError;
use crate::signals::Signal;

/// How many times a process replaces a successor that crashed while it still lives.
pub(crate) const RESCUES: u32 = 3;

/// Why the process should exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// A successor is ready and serving: drain and exit.
    Upgraded,
    /// The service was stopped.
    Stopped,
}

/// Where the process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Acquiring listeners, warming up: not ready yet.
    Starting,
    /// A stop came before ready: the start is being abandoned (the ready pipe closed without
    /// the ready byte). `signal` is the stop signal, if one caused it.
    Aborting { signal: Option<Signal> },
    /// Ready and serving. `deferred`: an upgrade signal came while this process's own parent
    /// was still draining; the upgrade starts once the parent has exited.
    Serving { deferred: bool },
    /// A successor is starting. `stops`: stop signals received meanwhile (the first cancels
    /// the upgrade, a second forces the exit); `cancelled`: the upgrade is being cancelled.
    Upgrading { cancelled: bool, stops: u32 },
    /// Shutdown began: no longer accepting, finishing what is in flight.
    Draining(Drain),
    /// The process exits: nothing changes any more.
    Exiting(Exit),
}

/// The state of a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Drain {
    /// Why: a successor took over, or the service was stopped.
    pub(crate) reason: ExitReason,
    /// Stop signals received since shutdown began (or that began it): the next one forces
    /// the exit once this is 1.
    pub(crate) stops: u32,
    /// Successors started to replace crashed ones.
    pub(crate) rescues: u32,
    /// A replacement is starting.
    pub(crate) rescuing: bool,
    /// Everything in flight is done; the exit waits only for a replacement that is starting.
    pub(crate) drained: bool,
}

impl Drain {
    fn new(reason: ExitReason, stops: u32) -> Drain {
        Drain {
            reason,
            stops,
            rescues: 0,
            rescuing: false,
            drained: false,
        }
    }
}

/// How the process exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The drain completed: 0, or 1 if the body returned an error.
    Drained,
    /// The drain timeout ran out: 0, with a warning.
    DrainTimeout,
    /// A further stop signal during the drain: 128 + its number.
    Forced(Signal),
    /// Stopped before ready: never said ready; dies by the stop signal, or exits 1 for a
    /// stop request (or with the body's outcome, if the body returned).
    Aborted(Option<Signal>),
}

/// Something that happened.
#[derive(Debug)]
pub(crate) enum Event {
    /// `ready()` said ready (the ready byte is sent, the pid file written).
    Ready,
    /// The start was abandoned: the ready pipe is closed without the ready byte.
    Aborted,
    /// The upgrade signal (SIGHUP).
    UpgradeSignal,
    /// `upgrade()` was called.
    UpgradeRequest,
    /// A stop signal (`Some`) or `stop()` (`None`).
    Stop(Option<Signal>),
    /// This process's own parent has exited.
    ParentExited,
    /// The upgrade is over: the successor is ready and handed over, or it failed.
    UpgradeDone(Result<u32, UpgradeError>),
    /// The successor handed over to went away.
    SuccessorGone(Gone),
    /// A replacement for a crashed successor is ready, or failed.
    RescueDone(Result<u32, UpgradeError>),
    /// The service body returned (`Err`: it returned an error).
    BodyReturned(Result<(), String>),
    /// The body returned, the hooks ran and no connection is in flight.
    Drained,
    /// The drain timeout ran out.
    DrainTimeout,
    /// The notify loop's periodic tick (only under systemd): time for `WATCHDOG=1` pings,
    /// `EXTEND_TIMEOUT_USEC=` extensions and status refreshes. `healthy`: the user's health
    /// check (if any) passed.
    Tick { healthy: bool },
    /// The successor being started runs, with this pid (it is not ready yet).
    SuccessorStarted(u32),
}

/// What `STATUS=` says, for a person reading `systemctl status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusLine {
    /// `serving (pid N)`.
    Serving,
    /// `upgrading: starting a new process`, then `upgrading to pid N` once it runs.
    Upgrading(Option<u32>),
    /// `upgrade requested: waiting for the previous process (pid N) to exit`.
    UpgradeDeferred,
    /// `stopping: draining N connections`.
    Draining,
}

/// Which way an upgrade request is answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotReady,
    ParentAlive,
    InProgress,
    Terminating,
    AlreadyUpgraded,
}

impl Refusal {
    pub(crate) fn error(&self) -> UpgradeError {
        match self {
            Refusal::NotReady => UpgradeError::NotReady,
            Refusal::ParentAlive => UpgradeError::ParentAlive,
            Refusal::InProgress => UpgradeError::InProgress,
            Refusal::Terminating => UpgradeError::Terminating,
            Refusal::AlreadyUpgraded => UpgradeError::AlreadyUpgraded,
        }
    }
}

/// What a transition does, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Close the ready pipe without the ready byte; if that worked (ready was not sent),
    /// [`Event::Aborted`] follows.
    Abandon,
    /// Tell systemd `RELOADING=1` now (a deferred upgrade).
    NotifyReloading,
    /// Start an upgrade (with `RELOADING=1` unless already sent).
    StartUpgrade { reloading_sent: bool },
    /// Cancel the upgrade in flight (its successor is killed, unless already ready).
    CancelUpgrade,
    /// Answer the `upgrade()` call being handled.
    Refuse(Refusal),
    /// Answer the `upgrade()` call waiting for the upgrade in flight, with its outcome.
    AnswerWaiter,
    /// A refused upgrade signal: log it (and tell systemd, which may wait for this reload).
    IgnoreUpgradeSignal(Refusal),
    /// The upgrade failed and the process serves on: log the cause, tell systemd.
    UpgradeFailed,
    /// Shutdown begins: publish the reason (`shutdown()` resolves), run the hooks, arm the
    /// drain timeout. For a stop: tell systemd `STOPPING=1`, remove unix socket files.
    BeginDrain(ExitReason),
    /// Tell a parent that still lives that this process stops on purpose.
    TellParentStopping,
    /// Watch the successor just handed over (or the replacement just ready).
    WatchSuccessor,
    /// Start a replacement for the crashed successor.
    StartRescue,
    /// Log how the successor went away, and why nothing is done about it.
    SuccessorLeft(Gone),
    /// Log the outcome of a replacement.
    RescueOutcome,
    /// Tell systemd `STATUS=` (a line is sent only when it changed).
    Status(StatusLine),
    /// Tell systemd `EXTEND_TIMEOUT_USEC=`: the start or reload in progress goes on (while
    /// within the upgrade timeout).
    ExtendTimeout,
    /// Tell systemd's watchdog `WATCHDOG=1` (if `WatchdogSec=` asked for it).
    Watchdog,
    /// A stop signal during the drain: it goes on; the next one forces the exit.
    DrainContinues(Signal),
    /// Exit.
    Exit(Exit),
}

/// What the transition may ask about the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// This process's own parent (the process it took over from) still lives.
    pub(crate) parent_alive: bool,
    /// systemd takes this process's messages (`NotifyAccess=main`): it has no parent that
    /// lives, or its parent has released it (it is no longer the shim's child: the
    /// handover's `MAINPID=` follows at once).
    pub(crate) main_process: bool,
    /// systemd supervises this service (`NOTIFY_SOCKET` is usable): a successor that
    /// crashes after the handover is systemd's to restart, not ours.
    pub(crate) under_systemd: bool,
}

use Effect::*;
use Phase::*;

impl Phase {
    /// The transition: the phase after `event`, and what to do. Events that mean nothing
    /// in a phase leave it as it is and do nothing.
    pub(crate) fn on(self, event: &Event, facts: Facts) -> (Phase, Vec<Effect>) {
        match (self, event) {
            // --- Starting ---------------------------------------------------------------
            // A successor's status goes with its parent's handover (`MAINPID=`): until then
            // systemd would refuse its messages.
            (Starting, Event::Ready) if facts.parent_alive => (Serving { deferred: false }, vec![]),
            (Starting, Event::Ready) => (
                Serving { deferred: false },
                vec![Status(StatusLine::Serving)],
            ),
            (Starting, Event::UpgradeSignal) => {
                (self, vec![IgnoreUpgradeSignal(Refusal::NotReady)])
            }
            (Starting, Event::UpgradeRequest) => (self, vec![Refuse(Refusal::NotReady)]),
            // Not ready yet: abort, never say ready (the parent counts a failed upgrade).
            (Starting, Event::Stop(signal)) => (Aborting { signal: *signal }, vec![Abandon]),
            (Starting, Event::BodyReturned(_)) => (Aborting { signal: None }, vec![Abandon]),

            // --- Aborting ---------------------------------------------------------------
            (Aborting { signal }, Event::Aborted) => (
                Exiting(Exit::Aborted(signal)),
                vec![Exit(Exit::Aborted(signal))],
            ),
            // `ready()` won the race: the parent is handing over; stop as a ready process.
            (Aborting { signal }, Event::Ready) => (
                Draining(Drain::new(ExitReason::Stopped, u32::from(signal.is_some()))),
                vec![BeginDrain(ExitReason::Stopped), TellParentStopping],
            ),
            (Aborting { .. }, Event::UpgradeRequest) => (self, vec![Refuse(Refusal::Terminating)]),

            // --- Serving ----------------------------------------------------------------
            (Serving { deferred }, Event::UpgradeSignal) if facts.parent_alive => {
                // The previous process still drains: upgrade as soon as it has exited.
                let effects = if deferred {
                    vec![]
                } else {
                    vec![NotifyReloading, Status(StatusLine::UpgradeDeferred)]
                };
                (Serving { deferred: true }, effects)
            }
            (Serving { .. }, Event::UpgradeSignal) => (
                Upgrading {
                    cancelled: false,
                    stops: 0,
                },
                vec![
                    StartUpgrade {
                        reloading_sent: false,
                    },
                    Status(StatusLine::Upgrading(None)),
                ],
            ),
            (Serving { .. }, Event::UpgradeRequest) if facts.parent_alive => {
                (self, vec![Refuse(Refusal::ParentAlive)])
            }
            (Serving { deferred }, Event::UpgradeRequest) => (
                Upgrading {
                    cancelled: false,
                    stops: 0,
                },
                vec![
                    StartUpgrade {
                        reloading_sent: deferred,
                    },
                    Status(StatusLine::Upgrading(None)),
                ],
            ),
            (Serving { deferred: true }, Event::ParentExited) => (
                Upgrading {
                    cancelled: false,
                    stops: 0,
                },
                vec![
                    StartUpgrade {
                        reloading_sent: true,
                    },
                    Status(StatusLine::Upgrading(None)),
                ],
            ),
            (Serving { .. }, Event::Stop(signal)) => (
                Draining(Drain::new(ExitReason::Stopped, u32::from(signal.is_some()))),
                vec![
                    BeginDrain(ExitReason::Stopped),
                    TellParentStopping,
                    Status(StatusLine::Draining),
                ],
            ),
            (Serving { .. }, Event::BodyReturned(outcome)) => {
                let mut effects = vec![BeginDrain(ExitReason::Stopped)];
                // An error is no deliberate stop: a parent that still lives replaces us.
                if outcome.is_ok() {
                    effects.push(TellParentStopping);
                }
                effects.push(Status(StatusLine::Draining));
                (Draining(Drain::new(ExitReason::Stopped, 0)), effects)
            }

            // --- Upgrading --------------------------------------------------------------
            (Upgrading { .. }, Event::UpgradeSignal) => {
                (self, vec![IgnoreUpgradeSignal(Refusal::InProgress)])
            }
            (Upgrading { .. }, Event::UpgradeRequest) => (self, vec![Refuse(Refusal::InProgress)]),
            (Upgrading { stops, .. }, Event::Stop(Some(signal))) if stops >= 1 => (
                Exiting(Exit::Forced(*signal)),
                vec![Exit(Exit::Forced(*signal))],
            ),
            (Upgrading { stops, .. }, Event::Stop(signal)) => (
                Upgrading {
                    cancelled: true,
                    stops: stops + u32::from(signal.is_some()),
                },
                vec![CancelUpgrade],
            ),
            (Upgrading { stops, .. }, Event::BodyReturned(_)) => (
                Upgrading {
                    cancelled: true,
                    stops,
                },
                vec![CancelUpgrade],
            ),
            (Upgrading { stops, .. }, Event::UpgradeDone(Ok(_))) => (
                Draining(Drain::new(ExitReason::Upgraded, stops)),
                vec![
                    BeginDrain(ExitReason::Upgraded),
                    WatchSuccessor,
                    AnswerWaiter,
                ],
            ),
            (
                Upgrading {
                    cancelled: true,
                    stops,
                },
                Event::UpgradeDone(Err(_)),
            ) => (
                Draining(Drain::new(ExitReason::Stopped, stops)),
                vec![
                    BeginDrain(ExitReason::Stopped),
                    TellParentStopping,
                    AnswerWaiter,
                    Status(StatusLine::Draining),
                ],
            ),
            (Upgrading { .. }, Event::UpgradeDone(Err(_))) => (
                Serving { deferred: false },
                vec![UpgradeFailed, AnswerWaiter],
            ),

            (
                Upgrading {
                    cancelled: false, ..
                },
                Event::SuccessorStarted(pid),
            ) => (self, vec![Status(StatusLine::Upgrading(Some(*pid)))]),

            // --- The notify loop's tick ---------------------------------------------------
            // Only the service's main process is heard: a process started cold (a successor
            // is not the main one before its parent's handover), the serving one, and one
            // draining after its own stop (not one that handed over).
            (Starting, Event::Tick { healthy }) if facts.main_process => {
                (self, with_watchdog(vec![ExtendTimeout], *healthy))
            }
            // A successor that said ready but is not handed over yet: not heard.
            (Serving { .. }, Event::Tick { healthy }) if facts.main_process => {
                (self, with_watchdog(vec![], *healthy))
            }
            (Upgrading { cancelled, .. }, Event::Tick { healthy }) => {
                let extend = if cancelled {
                    vec![]
                } else {
                    vec![ExtendTimeout]
                };
                (self, with_watchdog(extend, *healthy))
            }
            (Draining(d), Event::Tick { healthy }) if d.reason == ExitReason::Stopped => (
                self,
                with_watchdog(vec![Status(StatusLine::Draining)], *healthy),
            ),

            // --- Draining ---------------------------------------------------------------
            // Under systemd, a process that handed over is no longer the main one: when the
            // main process exits, systemd sends SIGTERM again to what is left of the unit
            // (its final-sigterm step). That must not cut this drain; it ends by itself, at
            // the drain timeout, or by systemd's SIGKILL after TimeoutStopSec.
            (Draining(d), Event::Stop(Some(signal)))
                if d.stops >= 1 && !(d.reason == ExitReason::Upgraded && facts.under_systemd) =>
            {
                (
                    Exiting(Exit::Forced(*signal)),
                    vec![Exit(Exit::Forced(*signal))],
                )
            }
            (Draining(d), Event::Stop(Some(signal))) => (
                Draining(Drain { stops: 1, ..d }),
                vec![DrainContinues(*signal)],
            ),
            (Draining(d), Event::UpgradeSignal) => {
                (self, vec![IgnoreUpgradeSignal(refusal_while_draining(d))])
            }
            (Draining(d), Event::UpgradeRequest) => (self, vec![Refuse(refusal_while_draining(d))]),
            (Draining(d), Event::SuccessorGone(Gone::Crashed))
                if d.reason == ExitReason::Upgraded
                    && d.stops == 0
                    && !d.rescuing
                    && d.rescues < RESCUES
                    && !facts.under_systemd =>
            {
                (
                    Draining(Drain {
                        rescuing: true,
                        rescues: d.rescues + 1,
                        ..d
                    }),
                    vec![StartRescue],
                )
            }
            (Draining(_), Event::SuccessorGone(gone)) => (self, vec![SuccessorLeft(*gone)]),
            (Draining(d), Event::RescueDone(result)) => {
                let mut effects = vec![RescueOutcome];
                if result.is_ok() {
                    effects.push(WatchSuccessor);
                }
                let d = Drain {
                    rescuing: false,
                    ..d
                };
                if d.drained {
                    effects.push(Exit(Exit::Drained));
                    (Exiting(Exit::Drained), effects)
                } else {
                    (Draining(d), effects)
                }
            }
            // Wait for a replacement that is starting: it is told what this process holds.
            (Draining(d), Event::Drained) if d.rescuing => {
                (Draining(Drain { drained: true, ..d }), vec![])
            }
            (Draining(_), Event::Drained) => (Exiting(Exit::Drained), vec![Exit(Exit::Drained)]),
            (Draining(_), Event::DrainTimeout) => {
                (Exiting(Exit::DrainTimeout), vec![Exit(Exit::DrainTimeout)])
            }

            // --- Everything else changes nothing -----------------------------------------
            (_, Event::UpgradeDone(_))
            | (_, Event::ParentExited)
            | (_, Event::Ready)
            | (_, Event::Aborted)
            | (_, Event::Stop(_))
            | (_, Event::SuccessorGone(_))
            | (_, Event::RescueDone(_))
            | (_, Event::BodyReturned(_))
            | (_, Event::Drained)
            | (_, Event::DrainTimeout)
            | (_, Event::UpgradeSignal)
            | (_, Event::Tick { .. })
            | (_, Event::SuccessorStarted(_))
            | (Exiting(_), Event::UpgradeRequest) => (self, vec![]),
        }
    }

    /// A short name, for the log.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Starting => "starting",
            Aborting { .. } => "aborting",
            Serving { .. } => "serving",
            Upgrading { .. } => "upgrading",
            Draining(_) => "draining",
            Exiting(_) => "exiting",
        }
    }
}

/// `effects`, and a watchdog ping if the health check passed.
fn with_watchdog(mut effects: Vec<Effect>, healthy: bool) -> Vec<Effect> {
    if healthy {
        effects.push(Watchdog);
    }
    effects
}

fn refusal_while_draining(d: Drain) -> Refusal {
    match d.reason {
        ExitReason::Upgraded => Refusal::AlreadyUpgraded,
        ExitReason::Stopped => Refusal::Terminating,
    }
}
