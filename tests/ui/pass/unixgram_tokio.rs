//! A tokio unix datagram socket.

#[tableflip::main]
async fn main(
    #[listener("unixgram", "@tableflip-ui-unixgram-tokio")] sock: tokio::net::UnixDatagram,
) {
    drop(sock);
}
