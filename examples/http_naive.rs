//! `http_naive`: the `http` example as most people would write it, with
//! `axum::serve(...).with_graceful_shutdown(tf.shutdown())`. Same contract as `http`
//! (`$ADDR`, `GET /`, `GET /slow?ms=N`, `$WARMUP_MS`), kept to show, in tests and in the
//! benchmark, what that drain loses under keep-alive load across upgrades: requests reset on
//! just-accepted connections, keep-alive connections closed while the next request was
//! already sent. Do not copy it: `examples/http.rs` is the one to copy.

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
    tokio::time::sleep(Duration::from_millis(warmup)).await;
    tf.ready()?;

    let shutdown = async move {
        tf.shutdown().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn announce(reason: ShutdownReason) {
    tracing::info!(?reason, "on_shutdown: http_naive is draining");
}
