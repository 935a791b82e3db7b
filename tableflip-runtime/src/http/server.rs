//! [`Server`]: the grace periods, and the accept loop.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::BoxError;
use super::io::{Graces, Hold};
use super::listener::{Handshake, Listener, Plain};
use crate::{AcceptBackoff, Handle};

/// Default of [`Server::idle_grace`].
pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(1);
/// Default of [`Server::first_request_grace`].
pub const DEFAULT_FIRST_REQUEST_GRACE: Duration = Duration::from_secs(5);
/// Default of [`Server::goaway_delay`].
pub const DEFAULT_GOAWAY_DELAY: Duration = Duration::from_millis(500);
/// Default of [`Server::linger_timeout`].
pub const DEFAULT_LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`Server::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP server that serves until the drain and then loses no request: the grace periods,
/// the handshake (TLS), and [`serve`](Server::serve).
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener, app: axum::Router, tf: tableflip_runtime::Handle)
/// # -> std::io::Result<()> {
/// use std::time::Duration;
/// use tableflip_runtime::http::Server;
///
/// Server::new()
///     .idle_grace(Duration::from_millis(500))
///     .serve(listener, app, &tf)
///     .await
/// # }
/// ```
///
/// The drain itself is bounded by the service's `drain_timeout` (default 30 s): the process
/// exits then, whatever is still open.
#[derive(Clone)]
pub struct Server<H = Plain> {
    pub(super) idle_grace: Duration,
    pub(super) first_request_grace: Duration,
    pub(super) goaway_delay: Duration,
    pub(super) linger_timeout: Duration,
    pub(super) handshake_timeout: Duration,
    pub(super) handshake: H,
}

impl Default for Server<Plain> {
    fn default() -> Self {
        Server::new()
    }
}

impl Server<Plain> {
    /// A plain-text server (HTTP/1.1, and HTTP/2 with prior knowledge) with the default
    /// grace periods.
    pub fn new() -> Server<Plain> {
        Server {
            idle_grace: DEFAULT_IDLE_GRACE,
            first_request_grace: DEFAULT_FIRST_REQUEST_GRACE,
            goaway_delay: DEFAULT_GOAWAY_DELAY,
            linger_timeout: DEFAULT_LINGER_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            handshake: Plain,
        }
    }
}

impl<H> Server<H> {
    /// Once the drain has begun, how long an HTTP/1.1 keep-alive connection with no request
    /// in progress must stay silent before the server closes it (default 1 s). A client
    /// that keeps sending never sees its connection closed under it: its next answer says
    /// `Connection: close`, and it reconnects to the successor.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace;
        self
    }

    /// Once the drain has begun, how long a connection accepted before the drain may take
    /// to send its first request before the server closes it (default 5 s).
    pub fn first_request_grace(mut self, grace: Duration) -> Self {
        self.first_request_grace = grace;
        self
    }

    /// Once the drain has begun, how long an HTTP/2 connection may still open streams
    /// before the server sends its graceful GOAWAY (default 500 ms); the streams open then
    /// finish. Clients that reconnect on GOAWAY (browsers, hyper, Go, curl) lose nothing
    /// with any value; a client that does not (a load generator such as h2load, which
    /// counts every request it can no longer send as failed) loses nothing if it is done
    /// within the delay. `Duration::ZERO` sends it at once.
    pub fn goaway_delay(mut self, delay: Duration) -> Self {
        self.goaway_delay = delay;
        self
    }

    /// How long a lingering close reads and discards what the client still sends, waiting
    /// for it to close its side (default 2 s).
    pub fn linger_timeout(mut self, timeout: Duration) -> Self {
        self.linger_timeout = timeout;
        self
    }

    /// How long a connection's [`Handshake`] (TLS) may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs `handshake` on every accepted connection before HTTP: your own TLS acceptor,
    /// for instance.
    pub fn handshake<H2>(self, handshake: H2) -> Server<H2> {
        Server {
            idle_grace: self.idle_grace,
            first_request_grace: self.first_request_grace,
            goaway_delay: self.goaway_delay,
            linger_timeout: self.linger_timeout,
            handshake_timeout: self.handshake_timeout,
            handshake,
        }
    }

    /// Serves HTTPS with rustls: HTTP/1.1 and HTTP/2 (set `alpn_protocols` in `config` to
    /// `[b"h2", b"http/1.1"]` to offer both).
    #[cfg(feature = "rustls")]
    pub fn tls(
        self,
        config: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> Server<tokio_rustls::TlsAcceptor> {
        self.handshake(tokio_rustls::TlsAcceptor::from(config))
    }

    pub(super) fn graces(&self) -> Graces {
        Graces {
            idle: self.idle_grace,
            first_request: self.first_request_grace,
        }
    }

    /// Serves `service` on the connections of `listener` until the drain begins, then stops
    /// accepting at once (the successor accepts on the same socket) and finishes every
    /// connection it accepted; resolves when the last one is closed.
    ///
    /// `service` is any tower service: an axum `Router`, a `tower::ServiceBuilder` stack,
    /// `tower::service_fn(...)`. Each request carries the peer's address as the extension
    /// [`RemoteAddr`](super::RemoteAddr) (and axum's `ConnectInfo`, with the `axum` feature).
    /// HTTP/1.1 and HTTP/2 (by prior knowledge, or by ALPN with TLS) on the same port;
    /// upgrades (WebSocket) work on both.
    ///
    /// The future does not borrow `tf` or `self`: spawn one per listener if you have several.
    pub fn serve<L, S, B>(
        &self,
        listener: L,
        service: S,
        tf: &Handle,
    ) -> impl Future<Output = io::Result<()>> + Send + use<H, L, S, B>
    where
        L: Listener,
        H: Handshake<L::Io>,
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (server, tf) = (self.clone(), tf.clone());
        accept_loop(server, listener, service, tf)
    }
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("idle_grace", &self.idle_grace)
            .field("first_request_grace", &self.first_request_grace)
            .field("goaway_delay", &self.goaway_delay)
            .field("linger_timeout", &self.linger_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("handshake", &std::any::type_name::<H>())
            .finish()
    }
}

/// hyper-util's `auto` builder: HTTP/1.1 and HTTP/2 on one port, with timers (HTTP/1
/// header read timeout, HTTP/2 keep-alive) and the extended CONNECT of WebSockets over
/// HTTP/2.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}

async fn accept_loop<H, L, S, B>(
    server: Server<H>,
    mut listener: L,
    service: S,
    tf: Handle,
) -> io::Result<()>
where
    L: Listener,
    H: Handshake<L::Io>,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = Arc::new(builder());
    let mut backoff = AcceptBackoff::new();
    // Every connection holds a sender: the receiver sees the end once all are gone.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let shutdown = tf.shutdown();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((conn, addr)) => {
                backoff.succeeded();
                let hold = Hold {
                    _in_flight: tf.track(),
                    _server: open_tx.clone(),
                };
                tokio::spawn(super::conn::serve(
                    conn,
                    addr,
                    server.clone(),
                    builder.clone(),
                    service.clone(),
                    tf.clone(),
                    hold,
                ));
            }
            Err(e) => tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = backoff.failed(&e) => {}
            },
        }
    }
    // Stop accepting at once: the successor accepts on the same socket.
    drop(listener);
    tracing::debug!(
        in_flight = tf.in_flight(),
        "http: no longer accepting; draining"
    );
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}
