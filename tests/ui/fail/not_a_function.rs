#[tableflip::main]
pub struct Service;

fn main() {}
