#[tableflip::main]
async fn main(
    #[cfg(unix)]
    #[listener("tcp", ":8080")]
    http: tokio::net::TcpListener,
    #[cfg_attr(unix, listener("udp", ":53"))] dns: tokio::net::UdpSocket,
) {
    drop((http, dns));
}
