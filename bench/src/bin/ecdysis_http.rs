//! The peer of the `http` example on ecdysis 1.1.1: `GET /` answers `pid <PID>\n` over
//! HTTP/1.1 on `$ADDR`. The listener comes from ecdysis's `build_listen_tcp` (inherited at
//! an upgrade), served with `axum::serve` and its graceful shutdown once ecdysis's upgrade
//! (or stop) future resolves: stop accepting, close idle keep-alive connections, answer the
//! requests in flight, exit.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use ecdysis::tokio_ecdysis::{SignalKind, StopOnShutdown, TokioEcdysisBuilder};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;

/// ecdysis's stoppable stream of connections as an axum listener.
struct Accepted<S> {
    stream: S,
    addr: SocketAddr,
}

impl<S> axum::serve::Listener for Accepted<S>
where
    S: tokio_stream::Stream<Item = std::io::Result<TcpStream>> + Unpin + Send + 'static,
{
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.stream.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.peer_addr().unwrap_or(self.addr);
                    return (conn, peer);
                }
                Some(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                // Stopped by ecdysis: the graceful shutdown below takes over.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let mut builder = TokioEcdysisBuilder::new(SignalKind::hangup())?;
    builder.stop_on_signal(SignalKind::terminate())?;
    let stream = builder.build_listen_tcp(StopOnShutdown::Yes, addr, |b, addr| {
        b.set_reuse_address(true)?;
        b.bind(&addr.into())?;
        b.listen(1024)?;
        Ok(b.into())
    })?;
    let pid = std::process::id();
    let app = Router::new().route("/", get(move || async move { format!("pid {pid}\n") }));
    let (_ecdysis, exit) = builder.ready()?;
    axum::serve(Accepted { stream, addr }, app)
        .with_graceful_shutdown(async move {
            let _ = exit.await;
        })
        .await?;
    Ok(())
}
