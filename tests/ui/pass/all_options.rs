//! Every option at once (the expansion the docs show).

async fn flush(_: tableflip::ShutdownReason) {}
async fn log_it(reason: tableflip::ShutdownReason) {
    eprintln!("{reason:?}");
}

#[tableflip::main(
    pid_file = "/tmp/tableflip-ui-all-options.pid",
    upgrade_timeout = "90s",
    drain_timeout = "5s",
    upgrade_signal = "SIGUSR2",
    stop_signals = ["SIGTERM"],
    ready = "manual",
    on_shutdown = [flush, log_it],
    flavor = "multi_thread",
    worker_threads = 2,
    crate = "tableflip",
)]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener,
    #[listener(
        "udp",
        env = "TABLEFLIP_UI_UNSET_ADDR",
        default = "127.0.0.1:0",
        name = "dns"
    )]
    dns: tokio::net::UdpSocket,
    tf: tableflip::Handle,
) -> std::io::Result<()> {
    http.local_addr()?;
    dns.local_addr()?;
    tf.ready().map_err(std::io::Error::other)?;
    Ok(())
}
