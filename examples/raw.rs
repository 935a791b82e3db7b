//! The hello service on the runtime API alone: no attribute, no `Service` builder.
//!
//! ```text
//! ADDR=127.0.0.1:8080 cargo run --example raw   # TABLEFLIP_PID_FILE, TABLEFLIP_UPGRADE_TIMEOUT too
//! nc 127.0.0.1 8080          # hello from pid 1234
//! kill -HUP 1234             # a new process takes over the same socket
//! ```
//!
//! It serves TCP on `$ADDR` (default `127.0.0.1:8080`), upgrades on SIGHUP, and on SIGTERM
//! or after a handover stops accepting, lets connections in flight finish (at most 30 s)
//! and exits.

use std::process::ExitCode;
use std::time::Duration;

use tableflip::{Options, Upgrader};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // Threads first: the safe API never touches the environment (`Upgrader::new` reads what
    // the parent passed, and the successor is started without the handshake's variables).
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw: error: {}", e.one_line());
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), tableflip::Error> {
    let upgrade_timeout = match std::env::var("TABLEFLIP_UPGRADE_TIMEOUT") {
        Ok(v) => Some(tableflip::parse_duration(&v)?),
        Err(_) => None,
    };
    let mut options = Options::default();
    if let Some(path) = std::env::var_os("TABLEFLIP_PID_FILE") {
        options = options.pid_file(path);
    }
    if let Some(timeout) = upgrade_timeout {
        options = options.upgrade_timeout(timeout);
    }
    let upg = Upgrader::new(options)?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    // Under systemd socket activation, the socket named `http` (FileDescriptorName=).
    let listener: TcpListener = upg.fds().listen_activated(Some("http"), "tcp", &addr)?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| io("SIGHUP handler", e))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| io("SIGTERM handler", e))?;
    upg.ready()?;

    let mut in_flight = JoinSet::new();
    let mut backoff = tableflip::AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut conn, _)) => {
                    backoff.succeeded();
                    in_flight.spawn(async move {
                        let msg = format!("hello from pid {}\n", std::process::id());
                        let _ = conn.write_all(msg.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    });
                }
                // Out of descriptors and the like: back off, log at a bounded rate.
                Err(e) => backoff.failed(&e).await,
            },
            _ = hup.recv() => {
                let upg = upg.clone();
                tokio::spawn(async move {
                    match upg.upgrade().await {
                        Ok(pid) => tracing::info!(child_pid = pid, "upgraded"),
                        Err(e) => tracing::error!(error = %e, "upgrade failed; still serving"),
                    }
                });
            }
            _ = term.recv() => upg.stop(),
            reason = upg.exit() => {
                tracing::info!(?reason, "draining");
                break;
            }
            Some(_) = in_flight.join_next() => {}
        }
    }
    // Stop accepting; the successor (if any) holds the same socket.
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = in_flight.len(), "drain timeout");
    }
    Ok(())
}

fn io(what: &str, e: std::io::Error) -> tableflip::Error {
    tableflip::Error::Io {
        context: format!("can't install the {what}"),
        source: e,
    }
}
