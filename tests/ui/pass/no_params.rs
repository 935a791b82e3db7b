//! Neither listeners nor the Handle, and no return type.

#[tableflip::main]
async fn main() {}
