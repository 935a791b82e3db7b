//! `watchdog`: `GET /` answers `pid <PID>` on `$ADDR` (default `127.0.0.1:8080`), under
//! systemd's watchdog (`examples/systemd/http-watchdog.service`, `WatchdogSec=`). The runtime
//! pings systemd from its own loop, after the health check set here; two ways to fail it, for
//! `tests/real_systemd.rs`:
//!
//! - `SIGUSR2`: the health check fails from now on (the service still answers requests, but
//!   says it is unwell): the pings stop;
//! - `SIGUSR1`: every worker thread of the runtime blocks, as a deadlock would wedge it: the
//!   pings stop because nothing of the runtime runs any more.
//!
//! Either way systemd kills the process after `WatchdogSec=` (`Result=watchdog`) and
//! `Restart=` starts it again.
//!
//! ```text
//! cargo run --example watchdog
//! systemd-run --unit tf-wd -p Type=notify -p WatchdogSec=2 -p Restart=on-failure \
//!     target/debug/examples/watchdog
//! systemctl kill -s USR1 tf-wd   # wedged: restarted about 2 s later
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tableflip::Handle;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tableflip::main(drain_timeout = "30s")]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8080", name = "http")]
    listener: TcpListener,
    tf: Handle,
) -> std::io::Result<()> {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    tf.health_check(move || {
        let ok = flag.load(Ordering::Relaxed);
        async move {
            if ok {
                Ok(())
            } else {
                Err("told to fail (SIGUSR2)")
            }
        }
    });

    let mut wedge = signal(SignalKind::user_defined1())?;
    let mut unwell = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = wedge.recv() => wedge_the_runtime(),
                _ = unwell.recv() => {
                    tracing::warn!("SIGUSR2: the health check fails from now on");
                    healthy.store(false, Ordering::Relaxed);
                }
            }
        }
    });

    let pid = std::process::id();
    let app = Router::new().route("/", get(move || async move { format!("pid {pid}\n") }));
    tableflip::axum::serve(listener, app, &tf).await
}

/// Blocks every worker thread of the runtime for good: one blocking task per worker, and
/// this one.
fn wedge_the_runtime() {
    tracing::warn!("SIGUSR1: wedging the runtime (every worker thread blocks)");
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    for _ in 0..workers {
        tokio::spawn(async { block_forever() });
    }
    block_forever()
}

fn block_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
