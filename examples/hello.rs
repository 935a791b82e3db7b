//! `hello`: raw TCP. To every connection it writes `hello from pid <PID>` and closes it.
//!
//! ```text
//! cargo run --example hello                  # listens on $ADDR, default 127.0.0.1:8080
//! nc 127.0.0.1 8080                          # hello from pid 1234
//! kill -HUP 1234                             # a new process takes over the same socket
//! ```
//!
//! Upgrades on SIGHUP, drains and exits on SIGTERM or SIGINT. Under systemd socket
//! activation it claims the socket named `http`.

use tableflip::{Handle, ShutdownReason};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tableflip::main(on_shutdown = announce)]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8080", name = "http")]
    listener: TcpListener,
    tf: Handle,
) -> std::io::Result<()> {
    let msg = format!("hello from pid {}\n", std::process::id());
    let mut backoff = tableflip::AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut conn, _)) => {
                    backoff.succeeded();
                    let in_flight = tf.track();
                    let msg = msg.clone();
                    tokio::spawn(async move {
                        let _ = conn.write_all(msg.as_bytes()).await;
                        let _ = conn.shutdown().await;
                        drop(in_flight);
                    });
                }
                // Out of descriptors and the like: back off, log at a bounded rate.
                Err(e) => backoff.failed(&e).await,
            },
            _ = tf.shutdown() => return Ok(()),
        }
    }
}

async fn announce(reason: ShutdownReason) {
    tracing::info!(?reason, "on_shutdown: hello is going away");
}
