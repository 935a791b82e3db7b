//! What generated code reaches. Not public API.

pub use tableflip_runtime as runtime;
pub use tableflip_runtime::__private::SENTINEL;
pub use tokio;

/// Pins the output type of the body's future, so that `?` inside it infers its error type
/// from the declared return type of `main`.
pub fn body<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}

// Network families, as type-level markers for [`Fits`]: the generated code checks every
// listener parameter's type against its network's family, at the type.

/// `tcp`, `tcp4` and `tcp6` listeners.
#[derive(Debug)]
pub enum Tcp {}
/// `unix` (`SOCK_STREAM`) listeners.
#[derive(Debug)]
pub enum Unix {}
/// `unixpacket` (`SOCK_SEQPACKET`) listeners.
#[derive(Debug)]
pub enum UnixPacket {}
/// `udp`, `udp4` and `udp6` sockets.
#[derive(Debug)]
pub enum Udp {}
/// `unixgram` (`SOCK_DGRAM`) sockets.
#[derive(Debug)]
pub enum Unixgram {}

/// A type that can hold a socket of network family `Family`.
///
/// (rustc prints the family marker with its full, hidden path, so the headline names the
/// listener instead; rustc's own help then says which family the type fits.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` can't hold the socket this `#[listener]` declares",
    label = "wrong type for this listener's network",
    note = "tcp, tcp4, tcp6: tokio::net::TcpListener, std::net::TcpListener or std::os::fd::OwnedFd",
    note = "unix: tokio::net::UnixListener, std::os::unix::net::UnixListener or OwnedFd",
    note = "unixpacket: std::os::fd::OwnedFd",
    note = "udp, udp4, udp6: tokio::net::UdpSocket, std::net::UdpSocket or OwnedFd",
    note = "unixgram: tokio::net::UnixDatagram, std::os::unix::net::UnixDatagram or OwnedFd"
)]
pub trait Fits<Family>: tableflip_runtime::FromFd {}

// One impl a line (no macro): rustc quotes the line when it explains which family a type
// fits instead.
impl Fits<Tcp> for tokio::net::TcpListener {}
impl Fits<Tcp> for std::net::TcpListener {}
impl Fits<Tcp> for std::os::fd::OwnedFd {}
impl Fits<Unix> for tokio::net::UnixListener {}
impl Fits<Unix> for std::os::unix::net::UnixListener {}
impl Fits<Unix> for std::os::fd::OwnedFd {}
impl Fits<UnixPacket> for std::os::fd::OwnedFd {}
impl Fits<Udp> for tokio::net::UdpSocket {}
impl Fits<Udp> for std::net::UdpSocket {}
impl Fits<Udp> for std::os::fd::OwnedFd {}
impl Fits<Unixgram> for tokio::net::UnixDatagram {}
impl Fits<Unixgram> for std::os::unix::net::UnixDatagram {}
impl Fits<Unixgram> for std::os::fd::OwnedFd {}

/// Compiles only if `T` can hold a socket of `Family`; emitted at each listener's type.
pub fn assert_fits<Family, T: Fits<Family>>() {}
