//! What `#[tableflip::main]`'s generated code and this project's own tests reach. Not
//! public API: no stability promise.

pub use crate::handshake::SENTINEL;
