//! `upgrade_signal`.

#[tableflip::main(upgrade_signal = "SIGUSR2")]
async fn main() {}
