//! The `http` example with the proposed fix for idle keep-alive connections at shutdown.
//!
//! The example hands its listener to `axum::serve(..).with_graceful_shutdown(..)`. When the
//! successor is ready, axum asks hyper to shut every connection down gracefully, and hyper
//! closes at once each connection it sees as idle — including those whose next request is
//! already in the socket's receive buffer, unread. The client then sees its reused
//! connection closed (reset, since unread data was discarded) before any byte of the
//! answer: the race every HTTP client retries.
//!
//! Here, instead, the old process
//! 1. stops accepting at once (the successor accepts on the same socket);
//! 2. keeps serving the connections it has, and marks every answer `Connection: close`, so
//!    a busy client gets its answer and then reconnects (to the successor) by itself;
//! 3. starts axum's graceful shutdown only when no connection is left, or after
//!    [`IDLE_GRACE`], so that only connections idle that long are closed under a client.
//!
//! Same routes and environment as the example: `$ADDR`, `GET /` answers `pid <PID>`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use tableflip::{ConnGuard, Handle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long idle keep-alive connections are left open after the handover.
const IDLE_GRACE: Duration = Duration::from_secs(1);

#[tableflip::main(drain_timeout = "30s")]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8080", name = "http")]
    listener: TcpListener,
    tf: Handle,
) -> io::Result<()> {
    let pid = std::process::id();
    let draining = tf.clone();
    let app = Router::new()
        .route("/", get(move || async move { format!("pid {pid}\n") }))
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let close = draining.upgrader().exit_reason().is_some();
            async move {
                if close {
                    let v = HeaderValue::from_static("close");
                    res.headers_mut().insert(header::CONNECTION, v);
                }
                res
            }
        }));
    let listener = Draining {
        inner: listener,
        tf: tf.clone(),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tf.shutdown().await;
            // Connections close after their next answer; wait for them (bounded).
            let deadline = tokio::time::Instant::now() + IDLE_GRACE;
            while tf.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
}

/// Accepts until shutdown begins, then never again; every connection counts as in flight
/// until it is closed.
struct Draining {
    inner: TcpListener,
    tf: Handle,
}

impl axum::serve::Listener for Draining {
    type Io = Tracked;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Tracked, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.inner.accept() => match accepted {
                    Ok((io, addr)) => return (Tracked { io, _in_flight: self.tf.track() }, addr),
                    Err(e) => {
                        // Out of descriptors and the like: wait a little, keep serving.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = self.tf.shutdown() => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that counts as in flight while open.
struct Tracked {
    io: TcpStream,
    _in_flight: ConnGuard,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
