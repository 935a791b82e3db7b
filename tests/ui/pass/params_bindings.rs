//! Plain names with `mut`, raw identifiers, lint attributes; the same address on two networks.

#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")]
    #[allow(unused_mut)]
    mut r#type: tokio::net::TcpListener,
    #[listener("udp", "127.0.0.1:0")] _unused: tokio::net::UdpSocket,
) {
    let _ = r#type.local_addr();
}
