//! A tokio UDP socket.

#[tableflip::main]
async fn main(#[listener("udp", "127.0.0.1:0")] dns: tokio::net::UdpSocket) -> std::io::Result<()> {
    assert_ne!(dns.local_addr()?.port(), 0);
    Ok(())
}
