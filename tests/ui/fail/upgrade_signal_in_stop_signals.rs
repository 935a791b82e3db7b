#[tableflip::main(stop_signals = ["SIGTERM", "SIGHUP"])]
async fn main() {}

#[tableflip::main(upgrade_signal = "SIGUSR2", stop_signals = ["SIGUSR2"])]
async fn other() {}
