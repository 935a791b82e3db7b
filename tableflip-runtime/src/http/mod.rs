//! HTTP services that lose no request across upgrades: hyper (any tower service) and axum
//! (features `hyper`, `axum`; TLS with `rustls`).
//!
//! With `#[tableflip::main]` and the facade's `axum` feature, a whole service is:
//!
//! ```text
//! #[tableflip::main]
//! async fn main(#[listener("tcp", ":8080")] listener: TcpListener, tf: tableflip::Handle)
//!     -> std::io::Result<()> {
//!     tableflip::axum::serve(listener, app(), &tf).await
//! }
//! ```
//!
//! which is, by hand:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod doc {
//! use tableflip_runtime::{ListenerSpec, Service};
//!
//! fn main() -> std::process::ExitCode {
//!     Service::builder()
//!         .listener(ListenerSpec::new("listener", "tcp", ":8080"))
//!         .run(|mut listeners, tf| {
//!             let listener: tokio::net::TcpListener = listeners.take("listener")?;
//!             let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
//!             Ok(async move { tableflip_runtime::http::axum::serve(listener, app, &tf).await })
//!         })
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! [`serve`] (or [`Server`] for the grace periods and TLS) serves HTTP/1.1 and HTTP/2 (h2c
//! by prior knowledge, or ALPN with TLS) on one port with hyper-util's `auto` builder, until
//! the drain begins; then it stops accepting at once and finishes every connection it
//! accepted, so that not one client sees an error or has to retry.
//!
//! # The races, and what is done about each
//!
//! The natural `axum::serve(listener, app).with_graceful_shutdown(tf.shutdown())` (or
//! hyper's `graceful_shutdown()` on every connection) loses requests at every upgrade under
//! keep-alive load. What happens to a connection the old process accepted, and what this
//! module does instead:
//!
//! | the connection, when the drain begins | the naive drain | here |
//! |---|---|---|
//! | accepted, first bytes not read yet (in the socket buffer, or still on their way) | hyper-util's `auto` builder is still reading the protocol preface and drops the connection: the client's request is reset | served: nothing is shut down before the protocol is known; a silent connection is closed only after [`first_request_grace`](Server::first_request_grace) (5 s) |
//! | HTTP/1.1, a request in flight | answered, then closed | answered with `Connection: close`, then closed with a lingering close |
//! | HTTP/1.1 keep-alive, between requests, the next one already sent (in the socket buffer) | hyper sees an idle connection and closes it with the request unread: the client gets a reset or an end of file before any byte of an answer, and must retry (if it may) | closed only when it has been idle for [`idle_grace`](Server::idle_grace) (1 s) *and* a read would block at that moment; a request that arrives is read and answered with `Connection: close` |
//! | HTTP/1.1, idle | closed at once | closed after the idle grace period: a busy client never sees it |
//! | closing with bytes unread | the kernel answers them with a reset, which can destroy an answer the client has not read yet | a lingering close: shut down our side (FIN; TLS `close_notify`), read and discard until the client closes, at most [`linger_timeout`](Server::linger_timeout) (2 s) |
//! | HTTP/2 | GOAWAY at once (hyper sends the two-step graceful GOAWAY: GOAWAY, PING, then the final GOAWAY once the PING is answered); the open streams finish. A client that answers the PING before it writes the requests it had already queued (the `h2` crate's client does) gets them refused | the same, [`goaway_delay`](Server::goaway_delay) (500 ms) after the drain began and once the preface is read, so that a client which does not reconnect on GOAWAY finishes a short exchange; the first GOAWAY goes out alone, 50 ms before its PING, so queued requests arrive before the answer and are served; before the preface, as for HTTP/1 |
//! | a long-lived answer (server-sent events) or an upgraded connection (WebSocket) | the server waits for it, or the process exits under it | counted as in flight ([`Handle::track`](crate::Handle::track)): the drain waits for it, at most `drain_timeout`. The handler learns that the drain began from [`Handle::shutdown`](crate::Handle::shutdown) or [`Handle::is_draining`](crate::Handle::is_draining) and ends it cleanly |
//! | the accept loop, when `accept` fails (out of descriptors) | axum logs every error and sleeps 1 s | [`AcceptBackoff`](crate::AcceptBackoff): 5 ms doubling to 1 s, logs rate-limited |
//! | new connections | not accepted any more | not accepted any more: the successor accepts them on the same socket |
//!
//! Every connection counts as in flight ([`Handle::track`](crate::Handle::track)) from
//! accept to the end of its lingering close, so the old process exits as soon as the last
//! one is done, and at the latest at `drain_timeout`.
//!
//! # Your middleware, state, `ConnectInfo` and TLS
//!
//! The service is any tower service, so an axum `Router` with its layers and state, or a
//! `tower::ServiceBuilder` stack, is served as it is. Every request carries the peer's
//! address as [`RemoteAddr`] (and as axum's `ConnectInfo<SocketAddr>` with the `axum`
//! feature: no `into_make_service_with_connect_info` needed). TLS is a [`Handshake`] run in
//! each connection's own task: `Server::tls` (feature `rustls`) for rustls, or [`Server::handshake`] with
//! your own acceptor. A listener is anything that implements [`Listener`]: tokio's TCP and
//! unix listeners, or (feature `axum`) any `axum::serve::Listener` through
//! `axum::Listener` (feature `axum`).
//!
//! # The same by hand
//!
//! What [`serve`] does, without the corner cases (the protocol preface, the check that
//! nothing is left to read, the lingering close, TLS, HTTP/2): this is what
//! `examples/http.rs` was before this module existed.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod by_hand {
//! use std::time::Duration;
//! use axum::http::{HeaderValue, header};
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use tableflip_runtime::{AcceptBackoff, Handle};
//!
//! async fn serve(listener: tokio::net::TcpListener, app: axum::Router, tf: Handle) {
//!     // Once draining, every answer tells the client not to reuse the connection.
//!     let draining = tf.clone();
//!     let app = app.layer(axum::middleware::map_response(move |mut res: axum::response::Response| {
//!         let close = draining.is_draining();
//!         async move {
//!             if close {
//!                 res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
//!             }
//!             res
//!         }
//!     }));
//!     let mut backoff = AcceptBackoff::new();
//!     loop {
//!         tokio::select! {
//!             biased;
//!             _ = tf.shutdown() => return, // stop accepting at once
//!             accepted = listener.accept() => match accepted {
//!                 Ok((conn, _)) => {
//!                     backoff.succeeded();
//!                     let in_flight = tf.track(); // the drain waits for this connection
//!                     let (app, tf) = (app.clone(), tf.clone());
//!                     tokio::spawn(async move {
//!                         // Wait for the first bytes: hyper closes a connection it has read
//!                         // nothing from at a graceful shutdown.
//!                         let _ = tokio::time::timeout(Duration::from_secs(5), conn.peek(&mut [0])).await;
//!                         let conn = hyper::server::conn::http1::Builder::new()
//!                             .serve_connection(TokioIo::new(conn), TowerToHyperService::new(app));
//!                         tokio::pin!(conn);
//!                         tokio::select! {
//!                             biased;
//!                             _ = conn.as_mut() => {}
//!                             _ = tf.shutdown() => {
//!                                 // Busy clients close after their next answer; close
//!                                 // only a connection still open after the grace period.
//!                                 if tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await.is_err() {
//!                                     conn.as_mut().graceful_shutdown();
//!                                     let _ = conn.await;
//!                                 }
//!                             }
//!                         }
//!                         drop(in_flight);
//!                     });
//!                 }
//!                 Err(e) => backoff.failed(&e).await,
//!             },
//!         }
//!     }
//! }
//! # }
//! ```

#[cfg(feature = "axum")]
pub mod axum;
mod conn;
mod io;
mod listener;
mod server;
mod service;

use std::future::Future;
use std::io as stdio;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

pub use listener::{Handshake, Listener, Plain};
pub use server::{
    DEFAULT_FIRST_REQUEST_GRACE, DEFAULT_GOAWAY_DELAY, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_GRACE, DEFAULT_LINGER_TIMEOUT, Server,
};
/// The rustls this module uses (feature `rustls`): build the `ServerConfig` for
/// [`Server::tls`] with it.
#[cfg(feature = "rustls")]
pub use tokio_rustls::rustls;

use crate::{BoxError, Handle};

/// The peer's address, on every request's extensions
/// (`req.extensions().get::<RemoteAddr<SocketAddr>>()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RemoteAddr<A>(pub A);

/// Serves `service` on `listener` until the drain, then finishes every connection without
/// losing a request: [`Server::serve`] with the default grace periods.
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener, tf: tableflip_runtime::Handle) -> std::io::Result<()> {
/// use std::convert::Infallible;
/// use http_body_util::Full;
/// use hyper::body::Bytes;
///
/// let service = tower::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello\n"))))
/// });
/// tableflip_runtime::http::serve(listener, service, &tf).await
/// # }
/// ```
pub fn serve<L, S, B>(
    listener: L,
    service: S,
    tf: &Handle,
) -> impl Future<Output = stdio::Result<()>> + Send + use<L, S, B>
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Server::new().serve(listener, service, tf)
}
