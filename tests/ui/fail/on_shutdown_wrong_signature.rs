async fn hook() {}

#[tableflip::main(on_shutdown = hook)]
async fn main() {}
