//! `bare_ready` on the tableflip runtime, for instruction counts: one listener on `$ADDR`
//! (default `127.0.0.1:0`), ready (automatic), one line on stdout, then the body returns
//! and the service stops.

use std::process::ExitCode;

use tableflip::{ListenerSpec, Service};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    Service::builder()
        .without_default_subscriber()
        .listener(ListenerSpec::from_env(
            "l0",
            "tcp",
            "ADDR",
            Some("127.0.0.1:0"),
        ))
        .run(|mut listeners, _tf| {
            let listener: TcpListener = listeners.take("l0")?;
            Ok(async move {
                println!("ready {}", listener.local_addr()?);
                Ok::<(), std::io::Error>(())
            })
        })
}
