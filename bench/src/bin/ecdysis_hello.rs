//! The peer: the hello service on ecdysis 1.1.1 (Cloudflare's Rust crate modelled on Go
//! tableflip), following its `tokio_echo` example: a `TokioEcdysisBuilder` upgrading on
//! SIGHUP (stopping on SIGTERM), one TCP listener on `$ADDR` built through
//! `build_listen_tcp` (inherited from the parent at an upgrade, bound otherwise),
//! `ready()`, and after the upgrade future resolves, the connections in flight are finished
//! before the process exits. To every connection it writes `hello from pid <PID>` and
//! closes it.

use std::net::SocketAddr;
use std::sync::Arc;

use ecdysis::tokio_ecdysis::{SignalKind, StopOnShutdown, TokioEcdysisBuilder};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let mut builder = TokioEcdysisBuilder::new(SignalKind::hangup())?;
    builder.stop_on_signal(SignalKind::terminate())?;
    let mut stream = builder.build_listen_tcp(StopOnShutdown::Yes, addr, |b, addr| {
        b.set_reuse_address(true)?;
        b.bind(&addr.into())?;
        b.listen(1024)?;
        Ok(b.into())
    })?;
    let msg: Arc<str> = format!("hello from pid {}\n", std::process::id()).into();
    let server = tokio::spawn(async move {
        let mut in_flight = JoinSet::new();
        // The stream ends when the upgrade (or stop) begins.
        while let Some(conn) = stream.next().await {
            let Ok(mut conn) = conn else { continue };
            let msg = msg.clone();
            in_flight.spawn(async move {
                let _ = conn.write_all(msg.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
    });
    let (_ecdysis, exit) = builder.ready()?;
    let _ = exit.await;
    server.await?;
    Ok(())
}
