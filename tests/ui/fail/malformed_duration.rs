#[tableflip::main(upgrade_timeout = "60", drain_timeout = "5 s")]
async fn main() {}
