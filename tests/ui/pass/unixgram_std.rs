//! A std unix datagram socket.

#[tableflip::main]
async fn main(
    #[listener("unixgram", "@tableflip-ui-unixgram-std")] sock: std::os::unix::net::UnixDatagram,
) {
    drop(sock);
}
