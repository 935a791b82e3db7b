#[tableflip::main(
    pid_file = 5,
    upgrade_timeout = 60,
    upgrade_signal = Signal::SIGUSR2,
    stop_signals = "SIGTERM",
    on_shutdown = |_| async {},
    worker_threads = "4",
    crate = tableflip,
)]
async fn main() {}
