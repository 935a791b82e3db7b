//! `spawner`: a hygiene demonstrator. A TCP service on `$ADDR` (default `127.0.0.1:8081`)
//! that, for every connection, runs `/bin/sh -c 'ls -l /proc/self/fd; env'` and writes its
//! output back: what a program this service starts inherits.
//!
//! ```text
//! cargo run --example spawner
//! nc 127.0.0.1 8081          # the child's descriptors (0, 1, 2 and ls's own) and environment
//! ```
//!
//! A service's children must inherit none of its sockets or handshake pipes, and must not see
//! `TABLEFLIP_HAS_PARENT_7DIU3` or systemd's `LISTEN_*` variables, or they would believe they
//! were handed sockets. `tests/hygiene.rs` checks this at every stage of an upgrade.
//!
//! After writing the output it shuts its side down and waits for the client to hang up; the
//! connection counts as in flight until then, so a client can hold a generation in its drain.

use std::process::Stdio;

use tableflip::Handle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tableflip::main]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8081")] listener: TcpListener,
    tf: Handle,
) -> std::io::Result<()> {
    let mut backoff = tableflip::AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    backoff.succeeded();
                    let in_flight = tf.track();
                    tokio::spawn(async move {
                        if let Err(e) = serve(conn).await {
                            tracing::warn!(error = %e, "connection failed");
                        }
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

async fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    let out = tokio::process::Command::new("/bin/sh")
        .args(["-c", "ls -l /proc/self/fd; env"])
        .stdin(Stdio::null())
        .output()
        .await?;
    conn.write_all(&out.stdout).await?;
    conn.write_all(&out.stderr).await?;
    conn.shutdown().await?;
    // Until the client hangs up.
    let mut rest = [0u8; 64];
    while conn.read(&mut rest).await? > 0 {}
    Ok(())
}
