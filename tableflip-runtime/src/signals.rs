//! Signals: the type the builder takes, and the handlers of the service lifecycle.

use std::fmt;

use tokio::signal::unix::{SignalKind, signal};

macro_rules! signals {
    ($($(#[$cfg:meta])* $name:ident,)*) => {
        impl Signal {
            $(
                $(#[$cfg])*
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Signal = Signal(nix::sys::signal::Signal::$name);
            )*
        }
    };
}

/// A Unix signal, as the builder takes it: `Signal::SIGHUP`, `Signal::SIGUSR2`...
///
/// The names are the C names; those a platform lacks are missing there.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(nix::sys::signal::Signal);

signals! {
    SIGHUP,
    SIGINT,
    SIGQUIT,
    SIGILL,
    SIGTRAP,
    SIGABRT,
    SIGBUS,
    SIGFPE,
    SIGKILL,
    SIGUSR1,
    SIGSEGV,
    SIGUSR2,
    SIGPIPE,
    SIGALRM,
    SIGTERM,
    SIGCHLD,
    SIGCONT,
    SIGSTOP,
    SIGTSTP,
    SIGTTIN,
    SIGTTOU,
    SIGURG,
    SIGXCPU,
    SIGXFSZ,
    SIGVTALRM,
    SIGPROF,
    SIGWINCH,
    SIGIO,
    SIGSYS,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    SIGSTKFLT,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    SIGPWR,
}

impl Signal {
    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0 as i32
    }

    /// The signal's C name, e.g. `"SIGHUP"`.
    pub fn name(self) -> &'static str {
        self.0.as_str()
    }

    /// The signal numbered `raw`, if this platform has one.
    pub fn from_raw(raw: i32) -> Option<Signal> {
        nix::sys::signal::Signal::try_from(raw).ok().map(Signal)
    }

    pub(crate) fn to_nix(self) -> nix::sys::signal::Signal {
        self.0
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The installed handlers: one stream for the upgrade signal, one per stop signal.
pub(crate) struct Signals {
    upgrade: tokio::signal::unix::Signal,
    stop: Vec<tokio::signal::unix::Signal>,
}

/// What arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Upgrade,
    Stop(Signal),
}

impl Signals {
    /// Installs the handlers; must run inside a tokio runtime.
    pub(crate) fn install(upgrade: Signal, stop: &[Signal]) -> std::io::Result<Signals> {
        Ok(Signals {
            upgrade: signal(SignalKind::from_raw(upgrade.as_raw()))?,
            stop: stop
                .iter()
                .map(|s| signal(SignalKind::from_raw(s.as_raw())))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Waits for the next signal.
    pub(crate) async fn next(&mut self, stop_signals: &[Signal]) -> Event {
        let stops = self
            .stop
            .iter_mut()
            .zip(stop_signals.iter().copied())
            .map(|(s, sig)| {
                Box::pin(async move {
                    s.recv().await;
                    sig
                })
            });
        let any_stop = async {
            if stops.len() == 0 {
                std::future::pending::<Signal>().await
            } else {
                futures_select_all(stops.collect()).await
            }
        };
        tokio::select! {
            _ = self.upgrade.recv() => Event::Upgrade,
            sig = any_stop => Event::Stop(sig),
        }
    }
}

/// The first of several futures to finish (a tiny `select_all`).
async fn futures_select_all<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> F::Output {
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
