//! `upgrade_timeout`, with a compound duration.

#[tableflip::main(upgrade_timeout = "1m30s")]
async fn main() {}
