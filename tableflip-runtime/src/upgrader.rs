//! The upgrader: Go tableflip's `Upgrader`, with the same states and outcomes.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use crate::env::{self, Startup};
use crate::error::{Error, UpgradeError, chain};
use crate::fds::Fds;
use crate::net::ListenHook;
use crate::parent::Parent;
use crate::systemd::Notifier;
use crate::{child, pidfile};

/// How many times a process replaces a successor that crashed while it still lives.
pub const RESCUES: u32 = 3;

/// How long a new process has to become ready, unless configured otherwise.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of an [`Upgrader`].
#[derive(Clone, Default)]
pub struct Options {
    /// How long a new process has to become ready before it is killed.
    /// `None` means [`DEFAULT_UPGRADE_TIMEOUT`].
    pub upgrade_timeout: Option<Duration>,
    /// Where to write the pid at every `ready()`. A relative path resolves against the
    /// directory the process started in.
    pub pid_file: Option<PathBuf>,
    /// Called on every socket this process creates, after `socket()` and before `bind()`
    /// (Go's `net.ListenConfig.Control`): the place to set socket options.
    pub listen_hook: Option<ListenHook>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("pid_file", &self.pid_file)
            .field("listen_hook", &self.listen_hook.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Why the process should exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// A successor is ready and serving: drain and exit.
    Upgraded,
    /// The service was stopped.
    Stopped,
}

#[derive(Default)]
struct State {
    ready: bool,
    upgrading: bool,
    stopped: bool,
    upgraded: bool,
}

struct Inner {
    startup: &'static Startup,
    timeout: Duration,
    pid_file: Option<PathBuf>,
    parent: Option<Parent>,
    fds: Fds,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
    exit: watch::Sender<Option<ExitReason>>,
    /// The names pipe of a ready successor: closed only when this process exits.
    keep_open: Mutex<Option<OwnedFd>>,
    /// systemd's notification socket, if `NOTIFY_SOCKET` is set.
    systemd: Notifier,
}

/// Hands this process's sockets to a new copy of itself, Go tableflip style.
///
/// One per process; cheap to clone (all clones are the same upgrader).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tableflip_runtime::{Options, Upgrader};
///
/// let upg = Upgrader::new(Options::default())?;
/// let listener: tokio::net::TcpListener = upg.fds().listen("tcp", "127.0.0.1:8080")?;
/// upg.ready()?;
/// // on SIGHUP: upg.upgrade().await
/// upg.exit().await; // a successor took over, or stop() was called
/// # drop(listener); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upgrader {
    inner: Arc<Inner>,
}

impl Upgrader {
    /// Creates the process's upgrader, taking over what a parent passed, if any.
    ///
    /// Fails if the handshake with the parent failed (see [`Error::Handshake`]) or if an
    /// upgrader already exists.
    pub fn new(options: Options) -> Result<Upgrader, Error> {
        let startup = env::startup();
        let handoff = {
            let mut slot = startup.handoff.lock().unwrap_or_else(|e| e.into_inner());
            if slot
                .as_ref()
                .is_some_and(|h| matches!(h, Err(Error::AlreadyCreated)))
            {
                return Err(Error::AlreadyCreated);
            }
            let taken = slot.take();
            *slot = Some(Err(Error::AlreadyCreated));
            taken.transpose()?
        };
        let (parent, files) = match handoff {
            Some(h) => {
                if let Some(warning) = h.warning {
                    tracing::warn!("{warning}");
                }
                (Some(h.parent), h.files)
            }
            None => (None, Vec::new()),
        };
        let activation = startup
            .activation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        activation.log_note();
        let inherited = files.len();
        let fds = Fds::new(files, options.listen_hook);
        if !activation.sockets.is_empty() {
            let names: Vec<&str> = activation.sockets.iter().map(|a| a.name.as_str()).collect();
            tracing::info!(?names, "systemd passed sockets (socket activation)");
            fds.set_activated(activation.sockets);
        }
        tracing::debug!(
            pid = std::process::id(),
            has_parent = parent.is_some(),
            inherited,
            "upgrader created"
        );
        Ok(Upgrader {
            inner: Arc::new(Inner {
                startup,
                timeout: options.upgrade_timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT),
                pid_file: options.pid_file.map(|p| startup.resolve(&p)),
                parent,
                fds,
                state: Mutex::new(State::default()),
                stop: watch::channel(false).0,
                exit: watch::channel(None).0,
                keep_open: Mutex::new(None),
                systemd: Notifier::from_env(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The descriptors: get inherited ones, create or add new ones.
    pub fn fds(&self) -> &Fds {
        &self.inner.fds
    }

    /// The upgrade timeout in force.
    pub fn upgrade_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The pid file, resolved against the start-up directory.
    pub fn pid_file(&self) -> Option<&std::path::Path> {
        self.inner.pid_file.as_deref()
    }

    /// Signals that this process serves: closes inherited descriptors nobody claimed
    /// (unlinking their unix socket files) and sockets systemd passed that nobody claimed,
    /// writes the pid file, tells systemd (`READY=1`, only for a process started cold: a
    /// successor's readiness is announced by its parent) and tells the parent, which then
    /// drains and exits. Calling it again only rewrites the pid file.
    pub fn ready(&self) -> Result<(), Error> {
        // The pid file first: if it can't be written, this process is not ready, and nothing
        // that can't be undone (closing inherited sockets, unlinking their files, which the
        // old process still serves) has happened yet.
        if let Some(path) = &self.inner.pid_file {
            pidfile::write(path).map_err(|source| Error::PidFile {
                path: path.clone(),
                source,
            })?;
        }
        let first = !std::mem::replace(&mut self.state().ready, true);
        if first {
            let unclaimed = self.inner.fds.close_inherited();
            if !unclaimed.is_empty() {
                tracing::info!(?unclaimed, "closed inherited descriptors nobody claimed");
            }
            let unclaimed = self.inner.fds.close_activated();
            if !unclaimed.is_empty() {
                tracing::warn!(
                    ?unclaimed,
                    "closed sockets systemd passed that no listener claimed"
                );
            }
        }
        if first && self.inner.parent.is_none() {
            self.inner.systemd.ready();
        }
        if let Some(parent) = &self.inner.parent {
            parent.send_ready()?;
        }
        if first {
            tracing::info!(
                pid = std::process::id(),
                listeners = self.inner.fds.len(),
                "ready"
            );
        }
        Ok(())
    }

    /// Starts a new copy of this program with this process's descriptors and waits until
    /// it is ready (then this process should drain and exit: [`exit`](Self::exit) resolves),
    /// fails, or times out (it is then killed and reaped).
    ///
    /// Under systemd (`NOTIFY_SOCKET` set) it sends `RELOADING=1` when it starts; once the
    /// new process is ready, `MAINPID=<its pid>` with `READY=1`, then completes a
    /// `BARRIER=1` round (at most 5 s) before the upgrade counts as complete; after a
    /// failure, `READY=1` with `STATUS=upgrade failed: <cause>`.
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        {
            let mut st = self.state();
            if st.stopped {
                return Err(UpgradeError::Terminating);
            }
            if st.upgraded {
                return Err(UpgradeError::AlreadyUpgraded);
            }
            if !st.ready {
                return Err(UpgradeError::NotReady);
            }
            if self.inner.parent.as_ref().is_some_and(|p| !p.has_exited()) {
                drop(st);
                // systemd may be waiting for this reload (Type=notify-reload): end it.
                self.inner.systemd.reloading();
                self.inner
                    .systemd
                    .upgrade_failed(&UpgradeError::ParentAlive.to_string());
                return Err(UpgradeError::ParentAlive);
            }
            if st.upgrading {
                return Err(UpgradeError::InProgress);
            }
            st.upgrading = true;
        }
        let span = tracing::info_span!("upgrade", pid = std::process::id());
        let started = Instant::now();
        let result = async {
            self.inner.systemd.reloading();
            self.start_successor().await
        }
        .instrument(span)
        .await;

        let stopped = {
            let mut st = self.state();
            st.upgrading = false;
            st.upgraded = result.is_ok();
            st.stopped
        };
        match result {
            Ok(ready) => {
                self.keep_open(ready.names);
                // Our copies of the sockets stay open until this process exits: should the
                // successor crash meanwhile, connections wait in the backlog, not refused,
                // until its replacement accepts them.
                self.watch_successor(ready.child, ready.pid);
                // systemd must know the new main process before this one starts to exit. A
                // task, so that the upgrade completes even if this future is dropped.
                let upg = self.clone();
                let pid = ready.pid;
                let completion = tokio::spawn(async move {
                    upg.inner.systemd.handover(pid).await;
                    tracing::info!(
                        child_pid = pid,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "upgrade complete; this process should now drain and exit"
                    );
                    upg.inner.exit.send_replace(Some(ExitReason::Upgraded));
                });
                let _ = completion.await;
                Ok(pid)
            }
            Err(e) => {
                if stopped {
                    self.finish_stop();
                } else {
                    self.inner.systemd.upgrade_failed(&chain(&e));
                }
                Err(e)
            }
        }
    }

    /// Starts the program with everything in use and waits until it is ready, fails or
    /// times out.
    async fn start_successor(&self) -> Result<child::Ready, UpgradeError> {
        let files = self
            .inner
            .fds
            .snapshot(crate::parent::READY_FD)
            .map_err(UpgradeError::Io)?;
        tracing::info!(files = files.len(), "starting the new process");
        let stop = self.inner.stop.subscribe();
        child::upgrade(self.inner.startup, files, self.inner.timeout, stop).await
    }

    /// Holds a ready successor's names pipe open until this process exits (it tells the
    /// successor we are alive), replacing a previous successor's.
    fn keep_open(&self, names: OwnedFd) {
        *self
            .inner
            .keep_open
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(names);
    }

    /// Reaps the successor when it exits. If it crashes (a non-zero exit or a signal) while
    /// this process still lives, and so still holds the sockets, starts the program again with
    /// them, at most [`RESCUES`] times: a successor that dies right after saying ready costs a
    /// moment of latency, not the service. A clean exit (status 0) is a stop and is left alone.
    fn watch_successor(&self, child: tokio::process::Child, pid: u32) {
        let upg = self.clone();
        tokio::spawn(async move {
            let (mut child, mut pid) = (child, pid);
            for attempt in 1..=RESCUES {
                let status = child.wait().await;
                if !status.as_ref().is_ok_and(|s| !s.success()) {
                    tracing::info!(child_pid = pid, ?status, "the successor exited");
                    return;
                }
                tracing::error!(
                    child_pid = pid,
                    ?status,
                    attempt,
                    "the successor exited abnormally while this process still holds the \
                     sockets; starting the program again"
                );
                let started = Instant::now();
                match upg.start_successor().await {
                    Ok(ready) => {
                        upg.keep_open(ready.names);
                        upg.inner.systemd.handover(ready.pid).await;
                        tracing::info!(
                            child_pid = ready.pid,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "a new successor replaced the crashed one"
                        );
                        (child, pid) = (ready.child, ready.pid);
                    }
                    Err(e) => {
                        tracing::error!(error = %chain(&e), "can't replace the crashed successor");
                        return;
                    }
                }
            }
            let status = child.wait().await;
            tracing::info!(child_pid = pid, ?status, "the successor exited");
        });
    }

    /// Prevents further upgrades, cancels one in flight (killing its child) and resolves
    /// [`exit`](Self::exit). Without a completed upgrade, unix socket files in use are
    /// unlinked (except systemd's) and systemd is told `STOPPING=1`: the service is going
    /// away.
    pub fn stop(&self) {
        let upgrading = {
            let mut st = self.state();
            if std::mem::replace(&mut st.stopped, true) {
                return;
            }
            st.upgrading
        };
        self.inner.stop.send_replace(true);
        if !upgrading {
            self.finish_stop();
        }
    }

    fn finish_stop(&self) {
        if !self.state().upgraded {
            self.inner.systemd.stopping();
            self.inner.fds.close_and_remove_used();
            self.inner.exit.send_if_modified(|r| {
                let first = r.is_none();
                if first {
                    *r = Some(ExitReason::Stopped);
                }
                first
            });
        }
    }

    /// Resolves once the process should exit: a successor is ready, or `stop()` was called.
    pub async fn exit(&self) -> ExitReason {
        let mut rx = self.inner.exit.subscribe();
        match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.unwrap_or(ExitReason::Stopped),
            Err(_) => ExitReason::Stopped,
        }
    }

    /// The exit reason, if the process should exit.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        *self.inner.exit.borrow()
    }

    /// Was this process started by a tableflip parent (an upgrade), rather than cold?
    pub fn has_parent(&self) -> bool {
        self.inner.parent.is_some()
    }

    /// Waits until the parent has exited (at once if there is none). Fails if the parent
    /// wrote anything on the names pipe instead of closing it.
    pub async fn wait_for_parent(&self) -> Result<(), Error> {
        match &self.inner.parent {
            Some(p) => p.wait().await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrader")
            .field("has_parent", &self.has_parent())
            .field("fds", &self.inner.fds)
            .finish_non_exhaustive()
    }
}
