#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")] http: tokio::net::TcpListener,
    #[listener("tcp", ":8080")] admin: tokio::net::TcpListener,
    #[listener("udp", env = "ADDR")] a: tokio::net::UdpSocket,
    #[listener("udp", env = "ADDR", default = ":53")] b: tokio::net::UdpSocket,
) {
    drop((http, admin, a, b));
}
