//! Signal handling for the service lifecycle.

use tokio::signal::unix::{SignalKind, signal};

pub use nix::sys::signal::Signal;

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
            upgrade: signal(SignalKind::from_raw(upgrade as i32))?,
            stop: stop
                .iter()
                .map(|s| signal(SignalKind::from_raw(*s as i32)))
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
