#[tableflip::main(upgrade_timeout = "876000h")]
async fn main() {}
