//! `drain_timeout`, with a fraction and sub-millisecond precision (at least 100ms: shorter
//! drains are refused).

#[tableflip::main(drain_timeout = "1.0000015s")]
async fn main() {}
