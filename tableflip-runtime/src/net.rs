//! TEMPORARY STUB (replaced by the real module).
#![allow(missing_docs, unused)]
use crate::addr::Network;
use std::os::fd::{BorrowedFd, OwnedFd};
pub type ListenHook = std::sync::Arc<dyn Fn(&str, &str, BorrowedFd<'_>) -> std::io::Result<()> + Send + Sync>;
pub(crate) fn bind_listener(network: Network, addr: &str, hook: Option<&ListenHook>) -> std::io::Result<OwnedFd> { todo!() }
pub(crate) fn bind_packet(network: Network, addr: &str, hook: Option<&ListenHook>) -> std::io::Result<OwnedFd> { todo!() }
pub(crate) fn local_address(fd: BorrowedFd<'_>) -> std::io::Result<String> { todo!() }
pub(crate) fn check_socket(fd: BorrowedFd<'_>, network: Network) -> Result<(), String> { todo!() }
pub(crate) fn socket_matches(fd: BorrowedFd<'_>, network: Network, addr: &str) -> bool { todo!() }
