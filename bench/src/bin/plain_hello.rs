//! The `hello` example written on plain tokio, without tableflip: the baseline of the
//! overhead section. TCP on `$ADDR` (default `127.0.0.1:8080`); writes
//! `hello from pid <PID>` to every connection and closes it. Stops on SIGTERM (the default
//! action).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    let msg = format!("hello from pid {}\n", std::process::id());
    loop {
        match listener.accept().await {
            Ok((mut conn, _)) => {
                let msg = msg.clone();
                tokio::spawn(async move {
                    let _ = conn.write_all(msg.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
            // Out of descriptors and the like: keep serving.
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}
