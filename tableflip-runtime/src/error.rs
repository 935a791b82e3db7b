//! Typed errors. Every variant keeps its cause as `source()`, so the whole chain prints.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use crate::addr::AddrError;

/// A boxed error, for causes whose concrete type is private to this crate.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong outside of an upgrade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process was started by a tableflip parent, but the handshake failed.
    #[error("handshake with the parent process failed: {msg}")]
    Handshake {
        /// What was wrong.
        msg: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A network name or address could not be parsed.
    #[error(transparent)]
    Address(#[from] AddrError),
    /// A declared listener could not be acquired.
    #[error("listener `{param}` ({network} {addr:?})")]
    Listener {
        /// The parameter it was declared for.
        param: String,
        /// Its network.
        network: String,
        /// Its address.
        addr: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A socket could not be created or bound.
    #[error("can't listen on {network} {addr:?}")]
    Listen {
        /// The network, as given.
        network: String,
        /// The address, as given.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An inherited or activated descriptor is not the kind of socket it was declared as.
    #[error("inherited {what} doesn't fit: {msg}")]
    WrongSocket {
        /// Which descriptor (kind, network, address).
        what: String,
        /// What was found instead.
        msg: String,
    },
    /// The requested Rust type can't hold this kind of socket.
    #[error("a {ty} can't hold a {kind} on network {network:?}")]
    WrongType {
        /// The Rust type asked for.
        ty: &'static str,
        /// listener, packet, conn or fd.
        kind: &'static str,
        /// The network asked for.
        network: String,
    },
    /// The pid file could not be written.
    #[error("can't write pid file {}", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The parent could not be told that this process is ready.
    #[error("can't notify the parent process")]
    NotifyParent(#[source] io::Error),
    /// The parent wrote bytes where it should only have closed its end of the names pipe.
    #[error("unexpected data from the parent process on fd 4")]
    ParentMisbehaved,
    /// An environment variable held a value that can't be used.
    #[error("{name}={value:?}: {msg}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A setting that can't work (a zero or absurd duration).
    #[error("{what}: {msg}")]
    Config {
        /// The setting.
        what: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A stop came before this process was ready: it will never say ready.
    #[error("stopped before ready")]
    Aborted,
    /// Only one [`Upgrader`](crate::Upgrader) may exist in a process.
    #[error("only one Upgrader may exist in a process")]
    AlreadyCreated,
    /// Any other I/O error, with what was being done.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// An error and its causes on one line, joined by `": "`.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

impl Error {
    /// The error and its causes on one line, joined by `": "`.
    pub fn one_line(&self) -> String {
        chain(self)
    }

    pub(crate) fn handshake(msg: impl Into<String>, source: impl Into<Option<BoxError>>) -> Self {
        Error::Handshake {
            msg: msg.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why an upgrade did not happen. Each outcome of Go tableflip's `Upgrade()` is a variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// `ready()` has not been called yet.
    #[error("process is not ready yet")]
    NotReady,
    /// This process's own parent has not exited yet.
    #[error("parent process hasn't exited yet")]
    ParentAlive,
    /// Another upgrade is running.
    #[error("an upgrade is already in progress")]
    InProgress,
    /// The process is stopping; the upgrade was refused or cancelled (and its child killed).
    #[error("terminating")]
    Terminating,
    /// A previous upgrade succeeded: this process is on its way out.
    #[error("already upgraded")]
    AlreadyUpgraded,
    /// The new process could not be started.
    #[error("can't start the new process {}", path.display())]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The new process exited before it was ready.
    #[error("new process {pid} exited before it was ready ({status})")]
    ChildExited {
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
    },
    /// The new process was not ready in time; it was killed and reaped.
    #[error("new process {pid} wasn't ready within {timeout:?}; killed it")]
    TimedOut {
        /// Its pid.
        pid: u32,
        /// The upgrade timeout.
        timeout: Duration,
    },
    /// Setting up the upgrade failed (pipes, descriptors).
    #[error("can't prepare the upgrade")]
    Io(#[source] io::Error),
}
