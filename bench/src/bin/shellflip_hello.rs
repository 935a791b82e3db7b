//! The peer: the hello service on shellflip, following its `restarter` example.
//!
//! shellflip does not hand over listeners: each process binds a fresh `127.0.0.1:0` and
//! prints `<pid> <address>` on stdout (which every generation inherits) so that the bench
//! can find it. A restart is SIGUSR1 (shellflip's default signal); `$SHELLFLIP_SOCKET` is
//! the restart coordination socket, as in the example. To every connection it writes
//! `hello from pid <PID>` and closes it.

use std::sync::Arc;

use shellflip::{RestartConfig, ShutdownCoordinator, ShutdownHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = std::env::var("SHELLFLIP_SOCKET")
        .unwrap_or_else(|_| "/tmp/tableflip-bench-shellflip.sock".into());
    let restart_conf = RestartConfig {
        enabled: true,
        coordination_socket_path: socket.into(),
        ..Default::default()
    };
    // Start the restart thread; the task completes when a restart has succeeded. The first
    // poll tells the parent, if any, that this process is ready.
    let restart_task = restart_conf.try_into_restart_task()?;
    tokio::pin!(restart_task);
    let shutdown_coordinator = ShutdownCoordinator::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{} {}", std::process::id(), listener.local_addr()?);
    let msg: Arc<str> = format!("hello from pid {}\n", std::process::id()).into();

    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((conn, _)) => {
                    tokio::spawn(greet(conn, msg.clone(), shutdown_coordinator.handle()));
                }
                Err(e) => eprintln!("accept failed: {e}"),
            },
            res = &mut restart_task => {
                if let Err(e) = res {
                    eprintln!("restart task failed: {e}");
                }
                // Wait for all connections to complete.
                shutdown_coordinator.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// `_in_flight` is held until the greeting is written: the old process waits for every
/// handle before it exits.
async fn greet(mut conn: TcpStream, msg: Arc<str>, _in_flight: Arc<ShutdownHandle>) {
    let _ = conn.write_all(msg.as_bytes()).await;
    let _ = conn.shutdown().await;
}
