#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] dns: tokio::net::UdpSocket,
    #[listener("unixpacket", "@app")] seq: tokio::net::UnixListener,
) {
    drop((dns, seq));
}
