//! Where connections come from: [`Listener`], and the per-connection [`Handshake`] (TLS).

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A source of connections for [`Server::serve`](super::Server::serve).
///
/// Implemented for tokio's `TcpListener` (accepted sockets get `TCP_NODELAY`, as Go's `net`
/// gives them) and `UnixListener`; with the `axum` feature,
/// `axum::Listener` (feature `axum`) adapts any `axum::serve::Listener`. Accept
/// errors are returned, not retried: the server backs off with
/// [`AcceptBackoff`](crate::AcceptBackoff).
///
/// Keep `accept` quick: anything slow per connection (a TLS handshake) belongs in a
/// [`Handshake`], which runs in the connection's own task.
pub trait Listener: Send + 'static {
    /// The accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The peer's address, handed to every request as an extension
    /// ([`RemoteAddr`](super::RemoteAddr), and axum's `ConnectInfo` with the `axum` feature).
    type Addr: Clone + Send + Sync + 'static;

    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (conn, addr) = tokio::net::TcpListener::accept(self).await?;
        // Answers go out at once rather than waiting for an ACK (Nagle); failing to set it
        // changes nothing else.
        let _ = conn.set_nodelay(true);
        Ok((conn, addr))
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        tokio::net::UnixListener::accept(self).await
    }
}

/// What runs on an accepted connection before HTTP: nothing ([`Plain`]), or a TLS handshake
/// (a `tokio_rustls::TlsAcceptor`, with the `rustls` feature), or your own (PROXY protocol,
/// another TLS library).
///
/// It runs in the connection's task, bounded by
/// [`Server::handshake_timeout`](super::Server::handshake_timeout), so a slow client never
/// holds up the accept loop. A connection accepted before the drain began finishes its
/// handshake and is served.
pub trait Handshake<Io>: Clone + Send + Sync + 'static {
    /// The connection HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns the accepted connection into the one HTTP is spoken on.
    fn handshake(&self, io: Io) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// No handshake: HTTP is spoken on the accepted connection itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<Io> Handshake<Io> for Plain
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;

    async fn handshake(&self, io: Io) -> io::Result<Io> {
        Ok(io)
    }
}

#[cfg(feature = "rustls")]
impl<Io> Handshake<Io> for tokio_rustls::TlsAcceptor
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = tokio_rustls::server::TlsStream<Io>;

    fn handshake(&self, io: Io) -> impl Future<Output = io::Result<Self::Io>> + Send {
        self.accept(io)
    }
}
