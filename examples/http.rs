//! `http`: axum on `$ADDR` (default `127.0.0.1:8080`), HTTP/1.1 and HTTP/2 (h2c, prior
//! knowledge) on the same port, drained without losing a request by `tableflip::axum::serve`.
//!
//! - `GET /` answers `pid <PID>`;
//! - `GET /slow?ms=N` answers the same after N milliseconds (to watch a drain).
//!
//! ```text
//! cargo run --example http
//! curl 127.0.0.1:8080/slow?ms=5000 &         # started on the old process...
//! kill -HUP <pid>                            # ...finishes there, while new requests go
//! curl 127.0.0.1:8080/                       #    to the new one
//! curl --http2-prior-knowledge 127.0.0.1:8080/
//! ```
//!
//! Readiness is manual: the service reports ready only after its warm-up (`$WARMUP_MS`,
//! default 0, stands in for loading a cache), so the old process serves until then.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use tableflip::{Handle, ShutdownReason};
use tokio::net::TcpListener;

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

#[tableflip::main(ready = "manual", drain_timeout = "30s", on_shutdown = announce)]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8080", name = "http")]
    listener: TcpListener,
    tf: Handle,
) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let app = Router::new()
        .route("/", get(move || async move { format!("pid {pid}\n") }))
        .route(
            "/slow",
            get(move |Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                format!("pid {pid}\n")
            }),
        );

    let warmup: u64 = std::env::var("WARMUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if warmup > 0 {
        tracing::info!(warmup_ms = warmup, "warming up before ready");
        tokio::time::sleep(Duration::from_millis(warmup)).await;
    }
    tf.ready()?;

    tableflip::axum::serve(listener, app, &tf).await?;
    Ok(())
}

async fn announce(reason: ShutdownReason) {
    tracing::info!(?reason, "on_shutdown: http is draining");
}
