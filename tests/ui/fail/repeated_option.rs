#[tableflip::main(drain_timeout = "5s", drain_timeout = "10s")]
async fn main() {}
