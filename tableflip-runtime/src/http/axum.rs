//! axum on tableflip: [`serve`] a `Router` (feature `axum`).
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener, tf: tableflip_runtime::Handle) -> std::io::Result<()> {
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
//! tableflip_runtime::http::axum::serve(listener, app, &tf).await
//! # }
//! ```
//!
//! Handlers can take `ConnectInfo<SocketAddr>` as they are (every request carries it), and
//! learn that the drain began from the [`Handle`] in their state, to end a long-lived answer:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use axum::extract::State;
//! use axum::response::sse::{Event, Sse};
//! use futures_util::stream::{self, Stream};
//!
//! async fn events(State(tf): State<tableflip_runtime::Handle>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
//!     let ticks = stream::unfold(0u64, |n| async move {
//!         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!         Some((Ok(Event::default().data(n.to_string())), n + 1))
//!     });
//!     // Ends (and the client reconnects, to the successor) when the drain begins.
//!     Sse::new(futures_util::StreamExt::take_until(ticks, async move { tf.shutdown().await; }))
//! }
//! ```
//!
//! For the grace periods and TLS, use [`Server`]: an axum `Router` is a tower
//! service like any other.

use std::future::Future;
use std::io;

use super::Server;
use crate::Handle;

/// Serves an axum `Router` on `listener` until the drain, then finishes every connection
/// without losing a request: [`Server::serve`](super::Server::serve) with the defaults.
///
/// Every request carries `ConnectInfo<L::Addr>` (`ConnectInfo<SocketAddr>` for TCP).
pub fn serve<L>(
    listener: L,
    router: ::axum::Router,
    tf: &Handle,
) -> impl Future<Output = io::Result<()>> + Send + use<L>
where
    L: super::Listener,
{
    Server::new().serve(listener, router, tf)
}

/// Any `axum::serve::Listener` (one made with `ListenerExt::tap_io`, or your own) as a
/// [`Listener`](super::Listener).
///
/// axum's listeners handle accept errors themselves; tokio's listeners, passed directly,
/// get [`AcceptBackoff`](crate::AcceptBackoff) instead.
#[derive(Debug)]
pub struct Listener<L>(pub L);

impl<L> super::Listener for Listener<L>
where
    L: ::axum::serve::Listener,
    L::Addr: Clone + Sync + 'static,
{
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> io::Result<(L::Io, L::Addr)> {
        Ok(self.0.accept().await)
    }
}
