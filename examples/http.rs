//! `http`: HTTP/1.1 with axum on `$ADDR` (default `127.0.0.1:8080`).
//!
//! - `GET /` answers `pid <PID>`;
//! - `GET /slow?ms=N` answers the same after N milliseconds (to watch a drain).
//!
//! ```text
//! cargo run --example http
//! curl 127.0.0.1:8080/slow?ms=5000 &         # started on the old process...
//! kill -HUP <pid>                            # ...finishes there, while new requests go
//! curl 127.0.0.1:8080/                       #    to the new one
//! ```
//!
//! Readiness is manual: the service reports ready only after its warm-up (`$WARMUP_MS`,
//! default 0, stands in for loading a cache), so the old process serves until then.
//!
//! At shutdown it stops accepting at once (the successor accepts on the same socket) and
//! answers every request in flight, and the first request of every connection it accepted.
//! Keep-alive connections are not closed under their clients: every answer from then on
//! carries `Connection: close`, so a busy client gets its answer and reconnects (to the
//! successor) by itself; only a connection that stays idle for [`IDLE_GRACE`] is closed
//! by the server. Closing idle connections at once, as `axum::serve` and hyper's graceful
//! shutdown do, races with a client that is sending its next request on it: hyper sees the
//! connection as idle while the request sits unread in the socket buffer, and the client gets
//! a reset before any byte of an answer (the failure every HTTP client retries once).
//!
//! Connections are served with hyper's HTTP/1 connection directly rather than
//! `axum::serve`: at a graceful shutdown, `axum::serve` drops a connection it has accepted
//! but whose first bytes it has not read yet, and the client then sees its request reset,
//! which is exactly what a graceful restart must never do.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tableflip::{ConnGuard, Handle, ShutdownReason};
use tokio::net::{TcpListener, TcpStream};

/// How long a connection accepted before a shutdown may take to send its first bytes and
/// still be answered.
const FIRST_BYTES_GRACE: Duration = Duration::from_secs(5);

/// How long a keep-alive connection may stay idle after shutdown begins before the server
/// closes it.
const IDLE_GRACE: Duration = Duration::from_secs(1);

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
    // Once shutdown has begun, every answer tells the client not to reuse the connection.
    let draining = tf.clone();
    let app = app.layer(axum::middleware::map_response(move |mut res: Response| {
        let close = draining.is_draining();
        async move {
            if close {
                let value = HeaderValue::from_static("close");
                res.headers_mut().insert(header::CONNECTION, value);
            }
            res
        }
    }));

    let warmup: u64 = std::env::var("WARMUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if warmup > 0 {
        tracing::info!(warmup_ms = warmup, "warming up before ready");
        tokio::time::sleep(Duration::from_millis(warmup)).await;
    }
    tf.ready()?;

    let mut backoff = tableflip::AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    backoff.succeeded();
                    // The drain waits for this connection until the guard is dropped.
                    let in_flight = tf.track();
                    tokio::spawn(serve(conn, app.clone(), tf.clone(), in_flight));
                }
                // Out of descriptors and the like: back off, log at a bounded rate.
                Err(e) => backoff.failed(&e).await,
            },
            _ = tf.shutdown() => return Ok(()),
        }
    }
}

/// Serves one connection until the client closes it or, once shutdown begins, until the
/// request in progress is answered.
async fn serve(conn: TcpStream, app: Router, tf: Handle, in_flight: ConnGuard) {
    // hyper's graceful shutdown closes a connection it has read nothing from yet. This one
    // was accepted, so its client is owed an answer: wait (bounded) for its first bytes, and
    // let hyper read them (the biased select polls it first) before a shutdown can reach it.
    let _ = tokio::time::timeout(FIRST_BYTES_GRACE, conn.peek(&mut [0u8; 1])).await;
    let conn =
        http1::Builder::new().serve_connection(TokioIo::new(conn), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => {}
        _ = tf.shutdown() => {
            // Answers from now on say `Connection: close` (see the middleware in `main`):
            // a busy client closes after its next answer. Only an idle one is closed here.
            if tokio::time::timeout(IDLE_GRACE, conn.as_mut()).await.is_err() {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
    drop(in_flight);
}

async fn announce(reason: ShutdownReason) {
    tracing::info!(?reason, "on_shutdown: http is draining");
}
