//! The running service's handle: what the body asks of the lifecycle.

use std::fmt;
use std::os::fd::OwnedFd;

use crate::error::{Error, UpgradeError};
use crate::fds::FromFd;
pub use crate::lifecycle::drain::ConnGuard;
use crate::lifecycle::phase::ExitReason;
use crate::upgrader::Upgrader;

/// Why the service is shutting down: handed to `on_shutdown` hooks and returned by
/// [`Handle::shutdown`].
pub type ShutdownReason = ExitReason;

/// The running service's handle: readiness, upgrades, shutdown, runtime listeners, files
/// for the next process, and in-flight connection tracking. Cheap to clone.
///
/// The body of a service gets one; serve until [`shutdown`](Handle::shutdown) resolves and
/// count each connection with [`track`](Handle::track), so the drain ends as soon as the
/// last one is done:
///
/// ```no_run
/// use tableflip_runtime::{Handle, ListenerSpec, Service};
/// use tokio::io::AsyncWriteExt;
///
/// async fn serve(listener: tokio::net::TcpListener, tf: Handle) -> std::io::Result<()> {
///     loop {
///         tokio::select! {
///             accepted = listener.accept() => {
///                 let (mut conn, _) = accepted?;
///                 let in_flight = tf.track();
///                 tokio::spawn(async move {
///                     let _ = conn.write_all(b"hello\n").await;
///                     drop(in_flight);
///                 });
///             }
///             reason = tf.shutdown() => {
///                 tracing::info!(?reason, "no longer accepting");
///                 return Ok(());
///             }
///         }
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     Service::builder()
///         .listener(ListenerSpec::new("http", "tcp", "127.0.0.1:8080"))
///         .run(|mut listeners, tf| Ok(serve(listeners.take("http")?, tf)))
/// }
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) upgrader: Upgrader,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("upgrader", &self.upgrader)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Handle {
    /// A handle over an upgrader you built yourself.
    pub fn new(upgrader: Upgrader) -> Handle {
        Handle { upgrader }
    }

    /// Marks the service ready (with `ready = "manual"`; harmless otherwise): the previous
    /// process, if any, starts to drain.
    pub fn ready(&self) -> Result<(), Error> {
        self.upgrader.ready()
    }

    /// Upgrades now, as the upgrade signal does; returns the new process's pid. On success
    /// [`shutdown`](Self::shutdown) resolves with [`ShutdownReason::Upgraded`].
    ///
    /// ```no_run
    /// # async fn demo(tf: tableflip_runtime::Handle) {
    /// match tf.upgrade().await {
    ///     Ok(pid) => tracing::info!(pid, "handed over"),
    ///     Err(e) => tracing::error!(error = %e, "upgrade failed; still serving"),
    /// }
    /// # }
    /// ```
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        self.upgrader.upgrade().await
    }

    /// Begins a graceful stop (before ready: abandons the start; the process exits 1 without
    /// ever saying ready).
    pub fn stop(&self) {
        self.upgrader.stop()
    }

    /// Resolves when the service should wind down: a successor took over, or it is stopping.
    pub async fn shutdown(&self) -> ShutdownReason {
        self.upgrader.exit().await
    }

    /// Has shutdown begun: a successor took over, or the service is stopping? From then on
    /// the service should accept nothing new and tell clients of long-lived connections to
    /// go elsewhere (an HTTP server answers with `Connection: close`, for instance).
    /// [`shutdown`](Self::shutdown) resolves at the same moment.
    pub fn is_draining(&self) -> bool {
        self.upgrader.exit_reason().is_some()
    }

    /// Was this process started by an upgrade?
    pub fn has_parent(&self) -> bool {
        self.upgrader.has_parent()
    }

    /// Waits until the previous process has exited.
    pub async fn wait_for_parent(&self) -> Result<(), Error> {
        self.upgrader.wait_for_parent().await
    }

    /// A listener known only at run time: inherited or bound, and passed on at upgrades.
    ///
    /// ```no_run
    /// # fn demo(tf: &tableflip_runtime::Handle) -> Result<(), tableflip_runtime::Error> {
    /// let admin: tokio::net::TcpListener = tf.listen("tcp", "127.0.0.1:9090")?;
    /// # Ok(()) }
    /// ```
    pub fn listen<T: FromFd>(&self, network: &str, addr: &str) -> Result<T, Error> {
        self.upgrader.fds().listen(network, addr)
    }

    /// A packet socket known only at run time.
    pub fn listen_packet<T: FromFd>(&self, network: &str, addr: &str) -> Result<T, Error> {
        self.upgrader.fds().listen_packet(network, addr)
    }

    /// Hands a file (a memfd, a pipe) to the next process under `name`.
    ///
    /// The successor gets it back with [`file`](Self::file): the way to carry state
    /// across an upgrade.
    ///
    /// ```no_run
    /// # fn demo(tf: &tableflip_runtime::Handle) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::io::{Read, Seek, Write};
    /// use std::os::fd::AsFd;
    ///
    /// let mut state = match tf.file("counter")? {
    ///     Some(fd) => std::fs::File::from(fd), // from the previous process
    ///     None => {
    ///         let f = tempfile_in_tmp()?;
    ///         tf.add_file("counter", f.as_fd())?; // for the next one
    ///         f
    ///     }
    /// };
    /// let mut count = String::new();
    /// state.rewind()?;
    /// state.read_to_string(&mut count)?;
    /// # Ok(()) }
    /// # fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    /// #     std::fs::OpenOptions::new().read(true).write(true).create(true).open("/tmp/counter")
    /// # }
    /// ```
    pub fn add_file(&self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Error> {
        self.upgrader.fds().add_file(name, fd)
    }

    /// A file the previous process handed over under `name`.
    pub fn file(&self, name: &str) -> Result<Option<OwnedFd>, Error> {
        self.upgrader.fds().file(name)
    }

    /// Counts a connection as in flight until the guard is dropped; the drain after a
    /// handover or stop ends as soon as the body has returned and no guard is left.
    pub fn track(&self) -> ConnGuard {
        self.upgrader.inner().tracker.track()
    }

    /// How many connections are in flight.
    pub fn in_flight(&self) -> usize {
        self.upgrader.inner().in_flight()
    }

    /// Sets the health check that gates systemd's watchdog pings (`WatchdogSec=`): see
    /// [`Upgrader::health_check`](crate::Upgrader::health_check).
    pub fn health_check<F, Fut, E>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.upgrader.health_check(check);
    }
}
