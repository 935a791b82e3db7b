//! The service lifecycle: what `#[tableflip::main]` generates, as a builder you can call by
//! hand. Start-up, listeners, signals, readiness, shutdown hooks and bounded draining.

use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::addr::{Network, check_timeout, parse_duration};
use crate::conn::{ConnHandoff, InheritedConn};
use crate::error::{Error, UpgradeError};
use crate::fds::{FdKind, FromFd};
pub use crate::lifecycle::drain::ConnGuard;
use crate::lifecycle::drain::Hook;
use crate::signals::Signal;
use crate::upgrader::{ExitReason, Options, Upgrader};

/// Why the service is shutting down: handed to `on_shutdown` hooks and returned by
/// [`Handle::shutdown`].
pub type ShutdownReason = ExitReason;

/// How long the old process may drain, unless configured otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// When the service counts as ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadyMode {
    /// As soon as every declared listener is held, before the body runs.
    #[default]
    Auto,
    /// When the body calls [`Handle::ready`].
    Manual,
}

#[derive(Clone, Debug)]
enum AddrSource {
    Literal(String),
    Env {
        var: String,
        default: Option<String>,
    },
}

/// A declared listener: the parameter it feeds, its network and where its address comes from.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    param: String,
    network: String,
    addr: AddrSource,
    name: Option<String>,
}

impl ListenerSpec {
    /// A listener on a fixed address, e.g. `ListenerSpec::new("http", "tcp", ":8080")`.
    pub fn new(param: &str, network: &str, addr: &str) -> ListenerSpec {
        ListenerSpec {
            param: param.to_owned(),
            network: network.to_owned(),
            addr: AddrSource::Literal(addr.to_owned()),
            name: None,
        }
    }

    /// A listener whose address is read from the environment variable `var` at start-up,
    /// falling back to `default` (if `None`, the variable is required).
    pub fn from_env(param: &str, network: &str, var: &str, default: Option<&str>) -> ListenerSpec {
        ListenerSpec {
            param: param.to_owned(),
            network: network.to_owned(),
            addr: AddrSource::Env {
                var: var.to_owned(),
                default: default.map(str::to_owned),
            },
            name: None,
        }
    }

    /// The systemd `FileDescriptorName=` this listener claims under socket activation.
    pub fn name(mut self, name: &str) -> ListenerSpec {
        self.name = Some(name.to_owned());
        self
    }

    /// Resolves the address, checking an environment-supplied one.
    fn address(&self) -> Result<String, Error> {
        let addr = match &self.addr {
            AddrSource::Literal(a) => return Ok(a.clone()),
            AddrSource::Env { var, default } => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    default.clone().ok_or_else(|| Error::Env {
                        name: var.clone(),
                        value: String::new(),
                        msg: format!("not set, and listener `{}` has no default", self.param),
                    })?
                }
                Err(std::env::VarError::NotUnicode(v)) => {
                    return Err(Error::Env {
                        name: var.clone(),
                        value: v.to_string_lossy().into_owned(),
                        msg: "not valid UTF-8".into(),
                    });
                }
            },
        };
        let var = match &self.addr {
            AddrSource::Env { var, .. } => var,
            AddrSource::Literal(_) => unreachable!(),
        };
        let network = Network::parse(&self.network)?;
        crate::addr::parse_address(network, &addr).map_err(|e| Error::Env {
            name: var.clone(),
            value: addr.clone(),
            msg: format!(
                "not a valid {} address for listener `{}`: {e}",
                self.network, self.param
            ),
        })?;
        Ok(addr)
    }
}

/// The declared listeners, acquired, for the body to take by parameter name.
#[derive(Debug, Default)]
pub struct Listeners {
    entries: Vec<(String, FdKind, Network, OwnedFd)>,
}

impl Listeners {
    pub(crate) fn push(&mut self, entry: (String, FdKind, Network, OwnedFd)) {
        self.entries.push(entry);
    }

    /// Takes the listener declared for `param` as a `T` (tokio types need a runtime).
    pub fn take<T: FromFd>(&mut self, param: &str) -> Result<T, Error> {
        let pos = self
            .entries
            .iter()
            .position(|(p, ..)| p == param)
            .ok_or_else(|| {
                Error::io(
                    format!("no listener declared for `{param}`"),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
        let (param, kind, network, fd) = self.entries.swap_remove(pos);
        if !T::fits(kind, network) {
            return Err(Error::WrongType {
                ty: T::NAME,
                kind: kind.as_str(),
                network: network.to_string(),
            });
        }
        T::from_fd(fd)
            .map_err(|e| Error::io(format!("can't use listener `{param}` as {}", T::NAME), e))
    }
}

/// What a service body may return: `()` or `Result<(), E>` with `E: Debug`, as with `main`.
#[diagnostic::on_unimplemented(
    message = "`main` must return `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "this return type"
)]
pub trait Outcome {
    /// `Err` with the error's `Debug` form, as std prints it.
    fn into_outcome(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Debug> Outcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

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

    /// The underlying upgrader.
    pub fn upgrader(&self) -> &Upgrader {
        &self.upgrader
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

    /// Hands an established connection (tokio's or std's `TcpStream`, `UnixStream`,
    /// `UdpSocket`, `UnixDatagram`, by reference) to the next process under `(network,
    /// addr)`, as Go's `AddConn` does (wire kind `conn`); `addr` is a free-form key, such as
    /// the peer's address. Keep the returned [`ConnHandoff`] while serving the connection;
    /// at the handover, stop reading and [`release`](ConnHandoff::release) it with what you
    /// read and did not process. See [`InheritedConn`] for the successor's side.
    ///
    /// ```no_run
    /// # async fn demo(tf: tableflip_runtime::Handle, stream: tokio::net::TcpStream) -> Result<(), tableflip_runtime::Error> {
    /// use tokio::io::AsyncReadExt;
    ///
    /// let peer = stream.peer_addr().map_err(|e| tableflip_runtime::Error::io("peer", e))?;
    /// let handoff = tf.add_conn("tcp", &peer.to_string(), &stream)?;
    /// let mut stream = stream;
    /// let mut pending = Vec::new();
    /// loop {
    ///     tokio::select! {
    ///         read = stream.read_buf(&mut pending) => {
    ///             if read.unwrap_or(0) == 0 { return Ok(()) } // closed: dropping `handoff` withdraws it
    ///             // ... answer the complete requests in `pending`, keep the rest ...
    ///         }
    ///         _ = tf.shutdown() => {
    ///             handoff.release(&pending); // the successor goes on from here
    ///             return Ok(());
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn add_conn(
        &self,
        network: &str,
        addr: &str,
        conn: impl std::os::fd::AsFd,
    ) -> Result<ConnHandoff, Error> {
        crate::conn::add(&self.upgrader, network, addr, conn)
    }

    /// Claims a connection the previous process handed over under `(network, addr)`, as a
    /// `T` (tokio's or std's `TcpStream`, `UnixStream`, `UdpSocket`, `UnixDatagram`, or
    /// `OwnedFd`); `None` if there is none. Claim before saying ready (`ready = "manual"`):
    /// ready closes what nobody claimed. Read it only after [`InheritedConn::resume`].
    ///
    /// ```no_run
    /// # async fn demo(tf: tableflip_runtime::Handle) -> Result<(), tableflip_runtime::Error> {
    /// for (network, addr) in tf.conns()? {
    ///     if let Some(conn) = tf.conn::<tokio::net::TcpStream>(&network, &addr)? {
    ///         tokio::spawn(async move {
    ///             let resumed = conn.resume().await; // the old process stopped reading it
    ///             // serve resumed.conn, starting with resumed.unread; keep resumed.handoff
    ///         });
    ///     }
    /// }
    /// tf.ready()?;
    /// # Ok(()) }
    /// ```
    pub fn conn<T: FromFd>(
        &self,
        network: &str,
        addr: &str,
    ) -> Result<Option<InheritedConn<T>>, Error> {
        crate::conn::claim(&self.upgrader, network, addr)
    }

    /// The `(network, addr)` keys of handed-over connections not claimed yet.
    pub fn conns(&self) -> Result<Vec<(String, String)>, Error> {
        crate::conn::inherited(&self.upgrader)
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
}

/// Builds and runs a service: what `#[tableflip::main]` expands to.
///
/// ```no_run
/// use tableflip_runtime::{ListenerSpec, Service};
///
/// fn main() -> std::process::ExitCode {
///     Service::builder()
///         .listener(ListenerSpec::new("http", "tcp", "127.0.0.1:8080"))
///         .run(|mut listeners, tf| {
///             let http: tokio::net::TcpListener = listeners.take("http")?;
///             Ok(async move {
///                 tf.shutdown().await;
///                 drop(http);
///             })
///         })
/// }
/// ```
pub struct Service {
    options: Options,
    drain_timeout: Duration,
    upgrade_signal: Signal,
    stop_signals: Vec<Signal>,
    ready: ReadyMode,
    hooks: Vec<Hook>,
    listeners: Vec<ListenerSpec>,
    runtime: Option<tokio::runtime::Builder>,
    pub(crate) default_subscriber: bool,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("options", &self.options)
            .field("drain_timeout", &self.drain_timeout)
            .field("upgrade_signal", &self.upgrade_signal)
            .field("stop_signals", &self.stop_signals)
            .field("ready", &self.ready)
            .field("hooks", &self.hooks.len())
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service with the defaults: upgrade on SIGHUP, stop on SIGTERM or SIGINT, auto ready,
    /// 60 s upgrade timeout, 30 s drain timeout, a multi-threaded tokio runtime.
    pub fn builder() -> Service {
        Service {
            options: Options::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            upgrade_signal: Signal::SIGHUP,
            stop_signals: vec![Signal::SIGTERM, Signal::SIGINT],
            ready: ReadyMode::Auto,
            hooks: Vec::new(),
            listeners: Vec::new(),
            runtime: None,
            default_subscriber: true,
        }
    }

    /// Don't install the default `tracing` subscriber (formatted, to stderr, filtered by
    /// `RUST_LOG`, default `info`); install your own before calling [`run`](Self::run).
    pub fn without_default_subscriber(mut self) -> Self {
        self.default_subscriber = false;
        self
    }

    /// Writes the pid file at every ready (overridden by `TABLEFLIP_PID_FILE`).
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.pid_file = Some(path.into());
        self
    }

    /// How long a new process has to become ready (overridden by `TABLEFLIP_UPGRADE_TIMEOUT`).
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.options.upgrade_timeout = Some(timeout);
        self
    }

    /// How long the old process may drain (overridden by `TABLEFLIP_DRAIN_TIMEOUT`).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The signal that starts an upgrade.
    pub fn upgrade_signal(mut self, signal: Signal) -> Self {
        self.upgrade_signal = signal;
        self
    }

    /// The signals that start a graceful stop.
    pub fn stop_signals(mut self, signals: impl IntoIterator<Item = Signal>) -> Self {
        self.stop_signals = signals.into_iter().collect();
        self
    }

    /// Auto or manual readiness.
    pub fn ready(mut self, mode: ReadyMode) -> Self {
        self.ready = mode;
        self
    }

    /// A hook run when shutdown begins, after the ones added before it.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ShutdownReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .push(Box::new(move |reason| Box::pin(hook(reason))));
        self
    }

    /// Declares a listener.
    pub fn listener(mut self, spec: ListenerSpec) -> Self {
        self.listeners.push(spec);
        self
    }

    /// Sets socket options on every socket this service creates, before it is bound.
    pub fn listen_hook(mut self, hook: crate::ListenHook) -> Self {
        self.options.listen_hook = Some(hook);
        self
    }

    /// The tokio runtime to build (drivers are enabled by `run`). Default: multi-threaded.
    pub fn runtime(mut self, builder: tokio::runtime::Builder) -> Self {
        self.runtime = Some(builder);
        self
    }

    /// Runs the service to completion and returns the process's exit code.
    ///
    /// `main` is called inside the runtime with the acquired listeners and the handle; it
    /// takes its listeners and returns the body. Start-up errors (a bad address, a failed
    /// bind, an unwritable pid file) print one line to stderr and give exit code 1, before
    /// the previous process, if any, is told to step aside.
    pub fn run<F, Fut, R>(self, main: F) -> ExitCode
    where
        F: FnOnce(Listeners, Handle) -> Result<Fut, Error>,
        Fut: Future<Output = R>,
        R: Outcome,
    {
        crate::env::init();
        crate::lifecycle::run(self, main)
    }
}

pub(crate) struct Parts {
    pub(crate) options: Options,
    pub(crate) drain_timeout: Duration,
    pub(crate) upgrade_signal: Signal,
    pub(crate) stop_signals: Vec<Signal>,
    pub(crate) ready: ReadyMode,
    pub(crate) hooks: Vec<Hook>,
    pub(crate) listeners: Vec<ListenerSpec>,
    pub(crate) runtime: Option<tokio::runtime::Builder>,
}

impl Service {
    /// Applies the operator overrides from the environment and splits the builder.
    pub(crate) fn into_parts(mut self) -> Result<Parts, Error> {
        if let Some(path) = env_override("TABLEFLIP_PID_FILE")? {
            if path.is_empty() {
                return Err(Error::Env {
                    name: "TABLEFLIP_PID_FILE".into(),
                    value: path,
                    msg: "empty path".into(),
                });
            }
            self.options.pid_file = Some(path.into());
        }
        if let Some(d) = env_duration("TABLEFLIP_UPGRADE_TIMEOUT")? {
            self.options.upgrade_timeout = Some(d);
        }
        if let Some(d) = env_duration("TABLEFLIP_DRAIN_TIMEOUT")? {
            self.drain_timeout = d;
        }
        let upgrade_timeout = self
            .options
            .upgrade_timeout
            .unwrap_or(crate::upgrader::DEFAULT_UPGRADE_TIMEOUT);
        for (what, d) in [
            ("upgrade timeout", upgrade_timeout),
            ("drain timeout", self.drain_timeout),
        ] {
            check_timeout(what, d).map_err(|msg| Error::Config {
                what: what.replace(' ', "_"),
                msg,
            })?;
        }
        Ok(Parts {
            options: self.options,
            drain_timeout: self.drain_timeout,
            upgrade_signal: self.upgrade_signal,
            stop_signals: self.stop_signals,
            ready: self.ready,
            hooks: self.hooks,
            listeners: self.listeners,
            runtime: self.runtime,
        })
    }
}

fn env_override(name: &str) -> Result<Option<String>, Error> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::Env {
            name: name.into(),
            value: v.to_string_lossy().into_owned(),
            msg: "not valid UTF-8".into(),
        }),
    }
}

fn env_duration(name: &str) -> Result<Option<Duration>, Error> {
    let Some(value) = env_override(name)? else {
        return Ok(None);
    };
    let what = if name.contains("UPGRADE") {
        "upgrade timeout"
    } else {
        "drain timeout"
    };
    parse_duration(&value)
        .map_err(|e| e.to_string())
        .and_then(|d| check_timeout(what, d).map(|()| d))
        .map(Some)
        .map_err(|msg| Error::Env {
            name: name.into(),
            value,
            msg,
        })
}

/// Acquires a declared listener: inherited by key, else activated by systemd (by name, else
/// by address and socket type), else bound.
pub(crate) fn acquire(
    upgrader: &Upgrader,
    spec: &ListenerSpec,
) -> Result<(String, FdKind, Network, OwnedFd), Error> {
    let addr = spec.address()?;
    let network = Network::parse(&spec.network)?;
    let kind = if network.is_packet() {
        FdKind::Packet
    } else {
        FdKind::Listener
    };
    let fd = upgrader
        .fds()
        .listen_activated::<OwnedFd>(spec.name.as_deref(), &spec.network, &addr);
    let fd = fd.map_err(|e| Error::Listener {
        param: spec.param.clone(),
        network: spec.network.clone(),
        addr: addr.clone(),
        source: Box::new(e),
    })?;
    Ok((spec.param.clone(), kind, network, fd))
}
