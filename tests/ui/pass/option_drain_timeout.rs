//! `drain_timeout`, with a fraction and sub-millisecond precision.

#[tableflip::main(drain_timeout = "1.5us")]
async fn main() {}
