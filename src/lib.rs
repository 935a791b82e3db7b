//! Graceful, zero-downtime upgrades for Rust network services.
//!
//! `kill -HUP <pid>` starts the new binary from the same path, hands it the very same
//! listening sockets, waits until it is ready, and only then lets the old process drain and
//! exit: not one connection is refused or reset. Wire-compatible with Go's
//! `github.com/cloudflare/tableflip` v1.2.3, so a Go service can be upgraded into a Rust one.
//!
//! Everything `#[tableflip::main]` generates is plain [`Service`] builder code; see the
//! README for the equivalent hand-written form.

#[doc(inline)]
pub use tableflip_macros::main;

#[doc(inline)]
pub use tableflip_runtime::*;

#[cfg(feature = "axum")]
pub use tableflip_runtime::http::axum;

/// Support for the code `#[tableflip::main]` generates. Not public API: no stability promise.
#[doc(hidden)]
pub mod __private;

/// The README's code blocks, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
