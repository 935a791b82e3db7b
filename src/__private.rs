//! What generated code reaches. Not public API.

pub use tableflip_runtime as runtime;
pub use tokio;

/// Pins the output type of the body's future, so that `?` inside it infers its error type
/// from the declared return type of `main`.
pub fn body<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}

/// Network families, as type-level markers for [`Fits`]: the generated code checks every
/// listener parameter's type against its network's family, at the type.
macro_rules! families {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}
    )*};
}

families! {
    /// `tcp`, `tcp4` and `tcp6` listeners.
    Tcp;
    /// `unix` (`SOCK_STREAM`) listeners.
    Unix;
    /// `unixpacket` (`SOCK_SEQPACKET`) listeners.
    UnixPacket;
    /// `udp`, `udp4` and `udp6` sockets.
    Udp;
    /// `unixgram` (`SOCK_DGRAM`) sockets.
    Unixgram;
}

/// A type that can hold a socket of network family `Family`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` can't hold a {Family} socket",
    label = "not a type for a {Family} socket",
    note = "Tcp: tokio::net::TcpListener, std::net::TcpListener or std::os::fd::OwnedFd",
    note = "Unix: tokio::net::UnixListener, std::os::unix::net::UnixListener or OwnedFd",
    note = "UnixPacket: std::os::fd::OwnedFd",
    note = "Udp: tokio::net::UdpSocket, std::net::UdpSocket or OwnedFd",
    note = "Unixgram: tokio::net::UnixDatagram, std::os::unix::net::UnixDatagram or OwnedFd"
)]
pub trait Fits<Family>: tableflip_runtime::FromFd {}

macro_rules! fits {
    ($($family:ident: $($ty:ty),*;)*) => {$($(
        impl Fits<$family> for $ty {}
    )*)*};
}

fits! {
    Tcp: tokio::net::TcpListener, std::net::TcpListener, std::os::fd::OwnedFd;
    Unix: tokio::net::UnixListener, std::os::unix::net::UnixListener, std::os::fd::OwnedFd;
    UnixPacket: std::os::fd::OwnedFd;
    Udp: tokio::net::UdpSocket, std::net::UdpSocket, std::os::fd::OwnedFd;
    Unixgram: tokio::net::UnixDatagram, std::os::unix::net::UnixDatagram, std::os::fd::OwnedFd;
}

/// Compiles only if `T` can hold a socket of `Family`; emitted at each listener's type.
pub fn assert_fits<Family, T: Fits<Family>>() {}
