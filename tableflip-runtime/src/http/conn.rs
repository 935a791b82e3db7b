//! One connection, from the handshake to the lingering close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::io::{DrainIo, Hold, Returned, Shared, linger};
use super::listener::Handshake;
use super::service::Tracked;
use super::{BoxError, Server};
use crate::Handle;

/// Serves one accepted connection until it is done: answered, drained, closed.
pub(super) async fn serve<Io, H, S, B, A>(
    conn: Io,
    addr: A,
    server: Server<H>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    tf: Handle,
    hold: Hold,
) where
    H: Handshake<Io>,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    A: Clone + Send + Sync + 'static,
{
    let handshake = server.handshake.handshake(conn);
    let io = match tokio::time::timeout(server.handshake_timeout, handshake).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "http: handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("http: handshake timed out");
            return;
        }
    };
    let shared = Arc::new(Shared::default());
    let returned: Returned<H::Io> = Arc::default();
    let io = DrainIo::new(io, hold, returned.clone(), shared.clone(), server.graces());
    let service = Tracked {
        inner: service,
        shared: shared.clone(),
        tf: tf.clone(),
        addr,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = Box::pin(conn);
    let served = tokio::select! {
        biased;
        served = conn.as_mut() => served,
        _ = tf.shutdown() => {
            shared.draining.store(true, Ordering::Release);
            // HTTP/1: nothing to do here; its answers now carry `Connection: close` and
            // `DrainIo` ends it once idle. HTTP/2: a graceful GOAWAY after the GOAWAY delay,
            // once the connection is known to be HTTP/2 (hyper-util's `auto` builder drops
            // a connection whose protocol it has not read yet if told to shut down).
            let goaway_at = tokio::time::sleep(server.goaway_delay);
            tokio::pin!(goaway_at);
            let mut goaway = false;
            let mut served = None;
            // At most two rounds: before and after the GOAWAY.
            for _ in 0..2 {
                if !goaway && shared.h2.load(Ordering::Acquire) && goaway_at.is_elapsed() {
                    shared.goaway.store(true, Ordering::Release);
                    conn.as_mut().graceful_shutdown();
                    goaway = true;
                }
                let step = std::future::poll_fn(|cx| {
                    if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                        return Poll::Ready(Some(out));
                    }
                    let due = !goaway
                        && shared.h2.load(Ordering::Acquire)
                        && goaway_at.as_mut().poll(cx).is_ready();
                    if due { Poll::Ready(None) } else { Poll::Pending }
                });
                served = step.await;
                if served.is_some() {
                    break;
                }
            }
            match served {
                Some(served) => served,
                None => conn.as_mut().await,
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "http: connection ended with an error");
    }
    drop(conn);
    // hyper is done with the socket (unless an upgrade took it): close it with a lingering
    // close, unless the peer already closed its side.
    let taken = returned.lock().ok().and_then(|mut slot| slot.take());
    if let Some((io, hold)) = taken {
        if !shared.read_eof.load(Ordering::Acquire) {
            linger(io, server.linger_timeout).await;
        }
        drop(hold);
    }
}
