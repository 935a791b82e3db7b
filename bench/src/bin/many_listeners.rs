//! A hello service with `$LISTENERS` TCP listeners (default 1), for the growth section.
//!
//! The first is declared on `$ADDR` (default `127.0.0.1:8080`), the others on
//! `127.0.0.1:0`: a port-0 address keeps its port across upgrades. Every listener writes
//! `hello from pid <PID>` to each connection and closes it, as the `hello` example does.

use std::process::ExitCode;
use std::sync::Arc;

use tableflip::{Handle, ListenerSpec, Service};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

fn main() -> ExitCode {
    let n: usize = std::env::var("LISTENERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut service = Service::builder()
        .listener(ListenerSpec::from_env("l0", "tcp", "ADDR", Some("127.0.0.1:8080")).name("http"));
    for i in 1..n {
        service = service.listener(ListenerSpec::new(&format!("l{i}"), "tcp", "127.0.0.1:0"));
    }
    service.run(move |mut listeners, tf| {
        let all = (0..n)
            .map(|i| listeners.take::<TcpListener>(&format!("l{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(async move {
            let msg: Arc<str> = format!("hello from pid {}\n", std::process::id()).into();
            let mut accepting = JoinSet::new();
            for listener in all {
                accepting.spawn(serve(listener, msg.clone(), tf.clone()));
            }
            tf.shutdown().await;
            // Stop accepting: the accept loops own the listeners.
            accepting.shutdown().await;
        })
    })
}

async fn serve(listener: TcpListener, msg: Arc<str>, tf: Handle) {
    loop {
        match listener.accept().await {
            Ok((mut conn, _)) => {
                let in_flight = tf.track();
                let msg = msg.clone();
                tokio::spawn(async move {
                    let _ = conn.write_all(msg.as_bytes()).await;
                    let _ = conn.shutdown().await;
                    drop(in_flight);
                });
            }
            // Out of descriptors and the like: keep serving.
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}
