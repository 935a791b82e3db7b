#[tableflip::main("/run/app.pid")]
async fn main() {}
