#[tableflip::main(stop_signals = [SIGTERM, "SIGINT", 15])]
async fn main() {}
