//! The runtime of [tableflip](https://docs.rs/tableflip): graceful, zero-downtime upgrades
//! for network services, wire-compatible with Go's `github.com/cloudflare/tableflip` v1.2.3.
//!
//! A running process starts a new copy of its own binary, hands it its listening sockets
//! over an inherited-descriptor handshake, waits until the copy says it is ready, and only
//! then drains and exits. Everything the `#[tableflip::main]` attribute generates is built
//! from this crate's public API, so it can be written by hand.
//!
//! The wire handshake is described in `docs/protocol.md`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod accept;
use tableflip_addr as addr;
mod child;
mod conn;
mod env;
mod error;
mod fds;
mod gob;
mod handle;
mod handover;
mod handshake;
#[cfg(feature = "hyper")]
pub mod http;
mod key;
#[cfg(feature = "axum")]
pub use http::axum;
mod lifecycle;
mod listeners;
mod log;
mod net;
mod outcome;
mod parent;
mod pidfile;
mod run;
mod service;
mod signals;
mod spec;
mod supervisor;
mod sys;
mod systemd;
pub mod testing;
mod upgrader;

pub use accept::AcceptBackoff;
pub use addr::{Network, parse_duration};
pub use conn::{ConnHandoff, InheritedConn, Resumed};
pub use env::init;
#[cfg(feature = "hyper")]
pub(crate) use error::BoxError;
pub use error::{AddrError, Error, UpgradeError};
pub use fds::{FdKind, Fds, FromFd};
pub use handle::{ConnGuard, Handle, ShutdownReason};
pub use listeners::Listeners;
pub use net::ListenHook;
pub use outcome::Outcome;
pub use run::ReadyMode;
pub use service::{DEFAULT_DRAIN_TIMEOUT, Service};
pub use signals::Signal;
pub use spec::ListenerSpec;
pub use sys::init_env;
pub use upgrader::{DEFAULT_UPGRADE_TIMEOUT, ExitReason, Options, Upgrader};

#[doc(hidden)]
pub mod __private;
