//! `stop_signals = []`: no signal stops the service (it stops when the body returns).

#[tableflip::main(stop_signals = [])]
async fn main() {}
