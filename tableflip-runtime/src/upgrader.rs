//! The upgrader: Go tableflip's `Upgrader`, with the same states and outcomes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::addr::check_timeout;
use crate::env;
use crate::error::{Error, UpgradeError};
use crate::fds::Fds;
use crate::lifecycle::core::{Gate, Inner, Setup};
use crate::lifecycle::driver;
use crate::lifecycle::msg::Msg;
use crate::lifecycle::phase::Event;
pub use crate::lifecycle::phase::ExitReason;
use crate::net::ListenHook;
use crate::parent::ReadySent;
use crate::pidfile;
use crate::systemd::Notifier;

/// How long a new process has to become ready, unless configured otherwise.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of an [`Upgrader`], set one by one:
///
/// ```
/// use std::time::Duration;
/// use tableflip_runtime::Options;
///
/// let options = Options::default()
///     .upgrade_timeout(Duration::from_secs(10))
///     .pid_file("/run/app.pid");
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Options {
    pub(crate) upgrade_timeout: Option<Duration>,
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) listen_hook: Option<ListenHook>,
}

impl Options {
    /// How long a new process has to become ready before it is killed (default
    /// [`DEFAULT_UPGRADE_TIMEOUT`]).
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Options {
        self.upgrade_timeout = Some(timeout);
        self
    }

    /// Where to write the pid at every `ready()`. A relative path resolves against the
    /// directory the process started in.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Options {
        self.pid_file = Some(path.into());
        self
    }

    /// Called on every socket this process creates, after `socket()` and before `bind()`
    /// (Go's `net.ListenConfig.Control`): the place to set socket options.
    pub fn listen_hook(mut self, hook: ListenHook) -> Options {
        self.listen_hook = Some(hook);
        self
    }
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
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::io(
                "Upgrader::new must be called inside a tokio runtime",
                std::io::ErrorKind::Unsupported.into(),
            ));
        }
        let timeout = options.upgrade_timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT);
        check_timeout("upgrade timeout", timeout).map_err(|msg| Error::Config {
            what: "upgrade_timeout".into(),
            msg,
        })?;
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
        let (tx, rx) = mpsc::unbounded_channel();
        let has_parent = parent.is_some();
        let inner = Arc::new(Inner::new(Setup {
            startup,
            timeout,
            pid_file: options.pid_file.map(|p| startup.resolve(&p)),
            parent,
            fds,
            systemd: Notifier::from_env().with_watchdog_from_env(has_parent),
            tx,
        }));
        driver::spawn(inner.clone(), rx);
        Ok(Upgrader { inner })
    }

    /// An upgrader over state built elsewhere (the test double, `testing.rs`).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Upgrader {
        Upgrader { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn send(&self, event: Event) {
        let _ = self.inner.tx.send(Msg::Event(event));
    }

    /// The descriptors: get inherited ones, create or add new ones.
    pub fn fds(&self) -> &Fds {
        &self.inner.fds
    }

    /// Sets the health check that gates systemd's watchdog pings (`WatchdogSec=`).
    ///
    /// Under a unit with `WatchdogSec=` the runtime sends `WATCHDOG=1` from its own loop,
    /// several times per interval, so a runtime whose threads are all blocked stops pinging
    /// and systemd restarts it. Before each ping it runs `check`: while `check` fails, or
    /// does not finish within the ping period (at most 1 s, a third of the interval), no
    /// ping is sent and the error is logged. Keep it cheap; it runs without a watchdog too
    /// (once a second, under systemd), so that its failures are logged either way.
    ///
    /// ```no_run
    /// # async fn demo(upg: tableflip_runtime::Upgrader) {
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// let db_ok = Arc::new(AtomicBool::new(true));
    /// upg.health_check(move || {
    ///     let db_ok = db_ok.clone();
    ///     async move {
    ///         if db_ok.load(Ordering::Relaxed) {
    ///             Ok(())
    ///         } else {
    ///             Err("the database does not answer")
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn health_check<F, Fut, E>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        self.inner.health.set(Arc::new(move || {
            let fut = check();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
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
        let inner = &self.inner;
        let mut gate = inner.gate.lock().unwrap_or_else(|e| e.into_inner());
        if *gate == Gate::Abandoned {
            return Err(Error::Aborted);
        }
        // The pid file first: if it can't be written, this process is not ready, and nothing
        // that can't be undone (closing inherited sockets, unlinking their files, which the
        // old process still serves) has happened yet.
        if let Some(path) = &inner.pid_file {
            pidfile::write(path).map_err(|source| Error::PidFile {
                path: path.clone(),
                source,
            })?;
        }
        if *gate == Gate::Ready {
            return Ok(());
        }
        let unclaimed = inner.fds.close_inherited();
        if !unclaimed.is_empty() {
            tracing::info!(?unclaimed, "closed inherited descriptors nobody claimed");
        }
        let unclaimed = inner.fds.close_activated();
        if !unclaimed.is_empty() {
            tracing::warn!(
                ?unclaimed,
                "closed sockets systemd passed that no listener claimed"
            );
        }
        crate::systemd::fdstore::ready(self);
        match &inner.parent {
            Some(parent) => {
                if parent.send_ready()? == ReadySent::Abandoned {
                    return Err(Error::Aborted);
                }
            }
            None => inner.systemd.ready(),
        }
        *gate = Gate::Ready;
        // Sent under the gate: a stop that finds the gate open knows this event is queued.
        self.send(Event::Ready);
        drop(gate);
        tracing::info!(
            pid = std::process::id(),
            listeners = inner.fds.len(),
            "ready"
        );
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
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(Msg::Upgrade(reply)).is_err() {
            return Err(UpgradeError::Terminating);
        }
        answer.await.unwrap_or(Err(UpgradeError::Terminating))
    }

    /// Begins a graceful stop: prevents further upgrades, cancels one in flight (killing its
    /// child) and resolves [`exit`](Self::exit). Unix socket files in use are unlinked
    /// (except systemd's) and systemd is told `STOPPING=1`. Before [`ready`](Self::ready),
    /// the start is abandoned instead: the process will never say ready.
    pub fn stop(&self) {
        self.send(Event::Stop(None));
    }

    /// Resolves once the process should exit: a successor is ready, or `stop()` was called.
    pub async fn exit(&self) -> ExitReason {
        let mut rx = self.inner.published.subscribe();
        match rx.wait_for(|p| p.exit.is_some()).await {
            Ok(p) => p.exit.unwrap_or(ExitReason::Stopped),
            Err(_) => ExitReason::Stopped,
        }
    }

    /// The exit reason, if the process should exit.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.inner.published.borrow().exit
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
