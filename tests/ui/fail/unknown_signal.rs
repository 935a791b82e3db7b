#[tableflip::main(upgrade_signal = "HUP", stop_signals = ["SIGTERM", "SIGFOO", "SIGTERM"])]
async fn main() {}
