//! The service builder: what `#[tableflip::main]` generates, as a builder you can call by
//! hand. Listeners, signals, readiness, timeouts, shutdown hooks; the operator overrides
//! from the environment are applied when it runs.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::addr::{check_timeout, parse_duration};
use crate::error::Error;
use crate::handle::{Handle, ShutdownReason};
use crate::lifecycle::drain::Hook;
use crate::listeners::Listeners;
use crate::outcome::Outcome;
use crate::run::{self, Parts, ReadyMode};
use crate::signals::Signal;
use crate::spec::ListenerSpec;
use crate::upgrader::Options;

/// How long the old process may drain, unless configured otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    default_subscriber: bool,
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

    /// Installs no `tracing` subscriber (the attribute's `subscriber = false`): install your
    /// own, or none.
    ///
    /// Without it, [`run`](Self::run) installs the default one (with the `subscriber`
    /// feature, on by default): formatted lines on stderr, filtered by `RUST_LOG` (default
    /// `info`), without colours and timestamps when stderr is the journal. It never replaces
    /// a subscriber that is already set, so one installed before `run` is kept either way.
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
        let subscriber = self.default_subscriber;
        match self.into_parts() {
            Ok(parts) => run::run(parts, subscriber, main),
            Err(e) => run::fail(&e),
        }
    }
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
