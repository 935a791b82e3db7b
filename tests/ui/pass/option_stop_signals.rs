//! `stop_signals`, here including SIGHUP, which is free once another signal upgrades.

#[tableflip::main(upgrade_signal = "SIGUSR1", stop_signals = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"])]
async fn main() {}
