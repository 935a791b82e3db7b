//! `udp`: echoes every datagram on `$ADDR` (default `127.0.0.1:8053`), prefixed with
//! `<PID> `.
//!
//! ```text
//! cargo run --example udp
//! echo hi | nc -u -w1 127.0.0.1 8053        # 1234 hi
//! ```
//!
//! The socket is handed to the successor at an upgrade, so datagrams queued during the
//! handover are answered by one process or the other, never dropped by a closed socket.

use tableflip::Handle;
use tokio::net::UdpSocket;

#[tableflip::main]
async fn main(
    #[listener("udp", env = "ADDR", default = "127.0.0.1:8053", name = "udp")] socket: UdpSocket,
    tf: Handle,
) -> std::io::Result<()> {
    let prefix = format!("{} ", std::process::id());
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received?;
                let mut reply = Vec::with_capacity(prefix.len() + n);
                reply.extend_from_slice(prefix.as_bytes());
                reply.extend_from_slice(&buf[..n]);
                if let Err(e) = socket.send_to(&reply, from).await {
                    tracing::warn!(error = %e, %from, "reply failed");
                }
            }
            _ = tf.shutdown() => return Ok(()),
        }
    }
}
