//! `unix`: like `hello`, on the unix socket at `$SOCKET` (default
//! `/tmp/tableflip-hello.sock`).
//!
//! ```text
//! cargo run --example unix
//! nc -U /tmp/tableflip-hello.sock            # hello from pid 1234
//! ```
//!
//! The socket file stays in place across upgrades (the successor serves the very same
//! socket) and is removed when the service stops.

use tableflip::Handle;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

#[tableflip::main]
async fn main(
    #[listener("unix", env = "SOCKET", default = "/tmp/tableflip-hello.sock")]
    listener: UnixListener,
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
