#[tableflip::main(upgrade_signal = "SIGKILL", stop_signals = ["SIGSTOP", "SIGSEGV"])]
async fn main() {}
