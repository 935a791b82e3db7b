#[tableflip::main]
async fn main(
    #[listener("tpc", "127.0.0.1:0")] http: tokio::net::TcpListener,
    #[listener(udp, "127.0.0.1:0")] dns: tokio::net::UdpSocket,
) {
    drop((http, dns));
}
