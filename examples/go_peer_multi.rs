//! `go_peer_multi`: the Rust successor of the Go tableflip service in `tests/go/multi`
//! (`tests/go_interop.rs` upgrades one into the other). It takes over only some of what
//! the Go service hands it:
//!
//! - tcp on `$TCP_ADDR` and unix on `$UNIX_PATH`: to every connection it writes
//!   `hello from pid <PID> state=<STATE>` and closes it, where STATE is the content of the
//!   file the Go service added with `AddFile("state", ...)` (`-` if there was none);
//! - udp on `$UDP_ADDR`: echoes every datagram prefixed with `<PID> `.
//!
//! The Go service's second tcp listener and its unixgram socket are not declared here:
//! the runtime closes them when this service is ready and, as Go tableflip does, removes
//! the unused unix socket's file.

use std::os::unix::fs::FileExt;

use tableflip::Handle;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket, UnixListener};

// Manual readiness: a file that is not claimed by the time the service is ready is closed
// (as Go's `Ready()` closes unused inherited fds), so the body takes it first.
#[tableflip::main(ready = "manual")]
async fn main(
    #[listener("tcp", env = "TCP_ADDR")] tcp: TcpListener,
    #[listener("unix", env = "UNIX_PATH")] unix: UnixListener,
    #[listener("udp", env = "UDP_ADDR")] udp: UdpSocket,
    tf: Handle,
) -> Result<(), Box<dyn std::error::Error>> {
    let state = match tf.file("state")? {
        Some(fd) => {
            let mut buf = vec![0u8; 4096];
            let n = std::fs::File::from(fd).read_at(&mut buf, 0)?;
            String::from_utf8_lossy(&buf[..n]).trim().to_owned()
        }
        None => "-".to_owned(),
    };
    tf.ready()?;
    let pid = std::process::id();
    let greeting = format!("hello from pid {pid} state={state}\n");
    let prefix = format!("{pid} ");
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            accepted = tcp.accept() => {
                if let Ok((conn, _)) = accepted {
                    tokio::spawn(greet(conn, greeting.clone(), tf.clone()));
                }
            }
            accepted = unix.accept() => {
                if let Ok((conn, _)) = accepted {
                    tokio::spawn(greet(conn, greeting.clone(), tf.clone()));
                }
            }
            received = udp.recv_from(&mut buf) => {
                let (n, from) = received?;
                let reply = [prefix.as_bytes(), &buf[..n]].concat();
                let _ = udp.send_to(&reply, from).await;
            }
            _ = tf.shutdown() => return Ok(()),
        }
    }
}

async fn greet(mut conn: impl AsyncWrite + Unpin, greeting: String, tf: Handle) {
    let _in_flight = tf.track();
    let _ = conn.write_all(greeting.as_bytes()).await;
    let _ = conn.shutdown().await;
}
