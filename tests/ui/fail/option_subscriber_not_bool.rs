#[tableflip::main(subscriber = "no")]
async fn main() {}
