#[tableflip::main(drain_timeout = "0s")]
async fn main() {}
