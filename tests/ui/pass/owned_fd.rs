//! `OwnedFd` holds a socket of every network, unixpacket included.

use std::os::fd::OwnedFd;

#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] tcp: OwnedFd,
    #[listener("tcp6", "[::1]:0")] tcp6: OwnedFd,
    #[listener("unix", "@tableflip-ui-owned-fd-unix")] unix: OwnedFd,
    #[listener("unixpacket", "@tableflip-ui-owned-fd-unixpacket")] unixpacket: OwnedFd,
    #[listener("udp4", "127.0.0.1:0")] udp: OwnedFd,
    #[listener("unixgram", "@tableflip-ui-owned-fd-unixgram")] unixgram: OwnedFd,
) {
    drop((tcp, tcp6, unix, unixpacket, udp, unixgram));
}
