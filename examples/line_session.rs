//! `line_session`: a line-based TCP echo whose sessions survive upgrades. It answers every
//! line `L` with `pid <PID> L`; at an upgrade it hands every open session, the connection
//! itself, to the successor, which answers the next lines on the same connection.
//!
//! ```text
//! cargo run --example line_session           # listens on $ADDR, default 127.0.0.1:8080
//! nc 127.0.0.1 8080
//! hello                                      # pid 1234 hello
//! kill -HUP 1234                             # (from another terminal)
//! hello again                                # pid 1240 hello again: same connection
//! ```
//!
//! Who reads when: a session reads into its own buffer and answers the complete lines in it.
//! When the handover happens (`tf.shutdown()` resolves with `Upgraded`), it stops reading and
//! releases the connection with the partial line it holds; the successor, which claimed the
//! connection before it said ready, waits for that release and starts with those bytes. A
//! line typed half before and half after the upgrade is answered whole, by the successor.
//!
//! Upgrades on SIGHUP, stops on SIGTERM or SIGINT (sessions are closed).

use tableflip::{ConnHandoff, Handle, ShutdownReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A longer line than this ends the session.
const MAX_LINE: usize = 64 * 1024;

#[tableflip::main(ready = "manual")]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8080")] listener: TcpListener,
    tf: Handle,
) -> Result<(), tableflip::Error> {
    // The sessions the previous process handed over: claimed before ready (ready closes
    // whatever nobody claimed), read only once the previous process let go of them.
    for (network, addr) in tf.conns()? {
        match tf.conn::<TcpStream>(&network, &addr) {
            Ok(Some(inherited)) => {
                let tf = tf.clone();
                let in_flight = tf.track();
                tokio::spawn(async move {
                    let resumed = inherited.resume().await;
                    tracing::info!(
                        peer = addr,
                        unread = resumed.unread.len(),
                        "session resumed"
                    );
                    session(resumed.conn, resumed.unread, resumed.handoff, tf).await;
                    drop(in_flight);
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "can't take over a session"),
        }
    }
    tf.ready()?;

    let mut backoff = tableflip::AcceptBackoff::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, peer)) => {
                    backoff.succeeded();
                    let handoff = match tf.add_conn("tcp", &peer.to_string(), &conn) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(error = %e, "can't record the session for the next process");
                            continue;
                        }
                    };
                    let tf = tf.clone();
                    let in_flight = tf.track();
                    tokio::spawn(async move {
                        session(conn, Vec::new(), handoff, tf).await;
                        drop(in_flight);
                    });
                }
                Err(e) => backoff.failed(&e).await,
            },
            _ = tf.shutdown() => return Ok(()),
        }
    }
}

/// Answers every complete line in `pending` and then in what arrives, until the client
/// closes (or sends an overlong line), or until the handover: then releases the connection
/// with the partial line left in `pending`.
async fn session(mut conn: TcpStream, mut pending: Vec<u8>, handoff: ConnHandoff, tf: Handle) {
    let pid = std::process::id();
    let mut handoff = Some(handoff);
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let mut answer = format!("pid {pid} ").into_bytes();
            answer.extend_from_slice(&line);
            if conn.write_all(&answer).await.is_err() {
                return;
            }
        }
        if pending.len() > MAX_LINE {
            let _ = conn.write_all(b"line too long\n").await;
            return;
        }
        tokio::select! {
            biased;
            reason = tf.shutdown(), if handoff.is_some() => {
                let handoff = handoff.take().expect("guarded");
                // Stop reading; the successor answers from here, starting with `pending`.
                if reason == ShutdownReason::Stopped || handoff.release(&pending) {
                    return;
                }
                // Accepted after the upgrade began: the successor never got it. Serve on
                // while this process drains.
            }
            // `read_buf` is cancel-safe: bytes are appended to `pending` only when it completes.
            read = conn.read_buf(&mut pending) => match read {
                Ok(0) | Err(_) => {
                    tracing::info!(peer = ?conn.peer_addr().ok(), "session ended");
                    return; // dropping `handoff` withdraws the session
                }
                Ok(_) => {}
            },
        }
    }
}
