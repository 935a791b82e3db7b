//! Runs a [`Service`](crate::Service): start-up, the body beside the lifecycle driver, and
//! the exit the driver decides. The phases and their transitions are in `lifecycle/`.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Error;
use crate::handle::Handle;
use crate::lifecycle::drain::{self, Hook};
use crate::lifecycle::msg::{Msg, Published};
use crate::lifecycle::phase::{Event, Exit};
use crate::listeners::{Listeners, acquire};
use crate::outcome::Outcome;
use crate::signals::{self, Signal, Signals};
use crate::spec::ListenerSpec;
use crate::upgrader::{Options, Upgrader};

/// Descriptors a service needs free at start-up: the runtime's own, the listeners, the pipes
/// of an upgrade and a few connections. Fewer is one clear error, not a panic later.
const MIN_FREE_FDS: u64 = 32;

/// How the process ends.
struct Ending {
    code: ExitCode,
    /// Die by this signal instead (a stop before ready).
    die_by: Option<Signal>,
}

impl From<ExitCode> for Ending {
    fn from(code: ExitCode) -> Ending {
        Ending { code, die_by: None }
    }
}

/// When the service counts as ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadyMode {
    /// As soon as every declared listener is held, before the body runs.
    #[default]
    Auto,
    /// When the body calls [`Handle::ready`].
    Manual,
}

/// Everything a run needs, from the builder, with the operator overrides applied.
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

/// Runs a service to completion: start-up, the body beside the lifecycle driver, and the
/// exit the driver decides.
pub(crate) fn run<F, Fut, R>(parts: Parts, default_subscriber: bool, main: F) -> ExitCode
where
    F: FnOnce(Listeners, Handle) -> Result<Fut, Error>,
    Fut: Future<Output = R>,
    R: Outcome,
{
    if let Err(e) = crate::sys::check_free_fds(MIN_FREE_FDS) {
        return fail(&e);
    }
    let log = if default_subscriber {
        crate::log::init()
    } else {
        None
    };
    let mut parts = parts;
    let mut builder = parts
        .runtime
        .take()
        .unwrap_or_else(tokio::runtime::Builder::new_multi_thread);
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::io("can't build the tokio runtime", e)),
    };
    let ending = rt.block_on(serve(parts, main));
    rt.shutdown_timeout(Duration::from_millis(100));
    // The last lines reach stderr before the process ends.
    crate::log::finish(log);
    if let Some(sig) = ending.die_by {
        crate::sys::die_by(sig.to_nix());
    }
    ending.code
}

/// One line on stderr, exit code 1.
pub(crate) fn fail(e: &Error) -> ExitCode {
    let program = std::env::args().next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or("tableflip");
    crate::log::line_now(&format!("{program}: error: {}", e.one_line()));
    ExitCode::FAILURE
}

async fn serve<F, Fut, R>(parts: Parts, main: F) -> Ending
where
    F: FnOnce(Listeners, Handle) -> Result<Fut, Error>,
    Fut: Future<Output = R>,
    R: Outcome,
{
    let (upgrader, listeners, signals) = match start(&parts) {
        Ok(s) => s,
        Err(e) => return fail(&e).into(),
    };
    let inner = upgrader.inner().clone();
    let (body_done, body_done_rx) = watch::channel(false);
    let _ = inner.drain.set(std::sync::Arc::new(drain::Plan {
        hooks: parts.hooks,
        timeout: parts.drain_timeout,
        body_done: body_done_rx,
    }));
    tokio::spawn(forward_signals(
        signals,
        parts.stop_signals,
        inner.tx.clone(),
    ));

    let handle = Handle::new(upgrader.clone());
    let body = match main(listeners, handle.clone()) {
        Ok(body) => body,
        Err(e) => return fail(&e).into(),
    };
    if parts.ready == ReadyMode::Auto {
        match upgrader.ready() {
            // A stop came first: the driver decides how this ends.
            Ok(()) | Err(Error::Aborted) => {}
            Err(e) => return fail(&e).into(),
        }
    }

    let mut published = inner.published.subscribe();
    let mut done = published.clone();
    tokio::pin!(body);
    let outcome = tokio::select! {
        out = &mut body => out.into_outcome(),
        exit = decided(&mut done) => return ending(exit, None),
    };
    let _ = body_done.send(true);
    if published.borrow_and_update().exit.is_none() {
        tracing::info!("the service body returned; stopping");
    }
    let _ = inner
        .tx
        .send(Msg::Event(Event::BodyReturned(outcome.clone())));
    ending(decided(&mut published).await, Some(outcome))
}

/// Waits until the driver has decided how the process exits.
async fn decided(published: &mut watch::Receiver<Published>) -> Exit {
    match published.wait_for(|p| p.done.is_some()).await {
        Ok(p) => p.done.unwrap_or(Exit::Drained),
        // The driver is gone (it never is before the runtime): exit as drained.
        Err(_) => Exit::Drained,
    }
}

/// The exit code for `exit`, given the body's outcome if it returned.
fn ending(exit: Exit, body: Option<Result<(), String>>) -> Ending {
    let body_failed = |e: &str| {
        crate::log::line_now(&format!("Error: {e}"));
        ExitCode::FAILURE
    };
    match (exit, body) {
        (Exit::Drained | Exit::DrainTimeout | Exit::Aborted(None), Some(Err(e))) => {
            body_failed(&e).into()
        }
        (Exit::Drained, _) => {
            tracing::info!(pid = std::process::id(), "drained; exiting");
            ExitCode::SUCCESS.into()
        }
        (Exit::DrainTimeout, _) => ExitCode::SUCCESS.into(),
        (Exit::Forced(sig), _) => ExitCode::from(128u8.wrapping_add(sig.as_raw() as u8)).into(),
        (Exit::Aborted(Some(sig)), _) => Ending {
            code: ExitCode::FAILURE,
            die_by: Some(sig),
        },
        (Exit::Aborted(None), Some(Ok(()))) => ExitCode::SUCCESS.into(),
        (Exit::Aborted(None), _) => ExitCode::FAILURE.into(),
    }
}

type Started = (Upgrader, Listeners, Signals);

fn start(parts: &Parts) -> Result<Started, Error> {
    let upgrader = Upgrader::new(parts.options.clone())?;
    let mut listeners = Listeners::default();
    for spec in &parts.listeners {
        listeners.push(acquire(&upgrader, spec)?);
    }
    let signals = Signals::install(parts.upgrade_signal, &parts.stop_signals)
        .map_err(|e| Error::io("can't install signal handlers", e))?;
    Ok((upgrader, listeners, signals))
}

/// Every signal becomes an event for the driver.
async fn forward_signals(
    mut signals: Signals,
    stop_signals: Vec<Signal>,
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
) {
    loop {
        let event = match signals.next(&stop_signals).await {
            signals::Event::Upgrade => Event::UpgradeSignal,
            signals::Event::Stop(sig) => {
                tracing::info!(signal = %sig, "stop signal");
                Event::Stop(Some(sig))
            }
        };
        if tx.send(Msg::Event(event)).is_err() {
            return;
        }
    }
}
