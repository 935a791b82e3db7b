//! Drives a [`Service`]: start-up, the body beside the signal loop, shutdown and drain.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{Error, UpgradeError, chain};
use crate::service::{Handle, Listeners, Outcome, Parts, ReadyMode, Service, acquire};
use crate::signals::{Event, Signal, Signals};
use crate::upgrader::Upgrader;

/// Why the drain was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forced {
    /// A second stop signal: exit at once with 128 + its number.
    Signal(Signal),
    /// The drain timeout ran out.
    Timeout,
}

pub(crate) fn run<F, Fut, R>(service: Service, main: F) -> ExitCode
where
    F: FnOnce(Listeners, Handle) -> Result<Fut, Error>,
    Fut: Future<Output = R>,
    R: Outcome,
{
    let default_subscriber = service.default_subscriber;
    let mut parts = match service.into_parts() {
        Ok(parts) => parts,
        Err(e) => return fail(&e),
    };
    if default_subscriber {
        init_tracing();
    }
    let mut builder = parts
        .runtime
        .take()
        .unwrap_or_else(tokio::runtime::Builder::new_multi_thread);
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::io("can't build the tokio runtime", e)),
    };
    let code = rt.block_on(serve(parts, main));
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

fn init_tracing() {
    // `RUST_LOG` as targets and levels (`info`, `tableflip_runtime=debug,warn`): a plain
    // target filter, without the regex engine of `EnvFilter`, keeps the binary small.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

/// One line on stderr, exit code 1.
fn fail(e: &Error) -> ExitCode {
    let program = std::env::args().next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or("tableflip");
    eprintln!("{program}: error: {}", e.one_line());
    ExitCode::FAILURE
}

async fn serve<F, Fut, R>(parts: Parts, main: F) -> ExitCode
where
    F: FnOnce(Listeners, Handle) -> Result<Fut, Error>,
    Fut: Future<Output = R>,
    R: Outcome,
{
    let started = match start(&parts) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let (upgrader, listeners, signals) = started;
    let handle = Handle::new(upgrader.clone());
    let body = match main(listeners, handle.clone()) {
        Ok(body) => body,
        Err(e) => return fail(&e),
    };
    if parts.ready == ReadyMode::Auto
        && let Err(e) = upgrader.ready()
    {
        return fail(&e);
    }

    let (force_tx, mut force_rx) = watch::channel(None);
    let (hooks_tx, mut hooks_rx) = watch::channel(false);
    tokio::spawn(signal_loop(
        upgrader.clone(),
        signals,
        parts.stop_signals.clone(),
        force_tx.clone(),
    ));
    let hooks = Arc::new(parts.hooks);
    let drain_timeout = parts.drain_timeout;
    {
        let upgrader = upgrader.clone();
        tokio::spawn(async move {
            let reason = upgrader.exit().await;
            tracing::info!(
                ?reason,
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "shutting down"
            );
            let deadline = force_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(drain_timeout).await;
                deadline.send_if_modified(|f| {
                    f.is_none().then(|| *f = Some(Forced::Timeout)).is_some()
                });
            });
            for hook in hooks.iter() {
                hook(reason).await;
            }
            let _ = hooks_tx.send(true);
        });
    }

    let forced = |rx: &mut watch::Receiver<Option<Forced>>| {
        let mut rx = rx.clone();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(f) => *f,
                Err(_) => std::future::pending().await,
            }
        }
    };

    tokio::pin!(body);
    let outcome = tokio::select! {
        out = &mut body => out.into_outcome(),
        f = forced(&mut force_rx) => return forced_exit(f, &handle),
    };
    if upgrader.exit_reason().is_none() {
        tracing::info!("the service body returned; stopping");
        upgrader.stop();
    }
    let drained = async {
        let _ = hooks_rx.wait_for(|done| *done).await;
        handle.tracker.wait_idle().await;
    };
    tokio::select! {
        () = drained => {}
        f = forced(&mut force_rx) => return forced_exit(f, &handle),
    }
    match outcome {
        Ok(()) => {
            tracing::info!(pid = std::process::id(), "drained; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
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

fn forced_exit(forced: Option<Forced>, handle: &Handle) -> ExitCode {
    match forced {
        Some(Forced::Signal(sig)) => {
            tracing::warn!(signal = %sig, in_flight = handle.in_flight(), "second stop signal: exiting now");
            ExitCode::from(128u8.wrapping_add(sig as u8))
        }
        _ => {
            tracing::warn!(
                in_flight = handle.in_flight(),
                "drain timeout: exiting with work in flight"
            );
            ExitCode::SUCCESS
        }
    }
}

async fn signal_loop(
    upgrader: Upgrader,
    mut signals: Signals,
    stop_signals: Vec<Signal>,
    force: watch::Sender<Option<Forced>>,
) {
    loop {
        match signals.next(&stop_signals).await {
            Event::Upgrade => {
                let upgrader = upgrader.clone();
                tokio::spawn(async move {
                    match upgrader.upgrade().await {
                        Ok(pid) => {
                            tracing::info!(child_pid = pid, "handed over to the new process")
                        }
                        Err(UpgradeError::InProgress) => {
                            tracing::info!("upgrade signal ignored: an upgrade is already running")
                        }
                        // Handed over already, or stopping (an upgrade in flight was
                        // cancelled): not a failure, and this process is not staying.
                        Err(e @ (UpgradeError::AlreadyUpgraded | UpgradeError::Terminating)) => {
                            tracing::info!(reason = %e, "no upgrade: this process is shutting down")
                        }
                        Err(e) => {
                            tracing::error!(error = %chain(&e), "upgrade failed; still serving")
                        }
                    }
                });
            }
            Event::Stop(sig) => {
                if upgrader.exit_reason().is_some() {
                    force.send_replace(Some(Forced::Signal(sig)));
                    return;
                }
                tracing::info!(signal = %sig, "stop signal: draining");
                upgrader.stop();
            }
        }
    }
}
