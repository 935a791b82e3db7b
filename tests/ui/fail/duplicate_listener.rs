#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")] http: tokio::net::TcpListener,
    #[listener("tcp", ":8080")] admin: tokio::net::TcpListener,
    #[listener("udp", env = "ADDR")] a: tokio::net::UdpSocket,
    #[listener("udp", env = "ADDR", default = ":53")] b: tokio::net::UdpSocket,
    #[listener("tcp", "127.0.0.1:0")] c: tokio::net::TcpListener,
    #[listener("tcp", "127.0.0.1:0")] d: tokio::net::TcpListener,
) {
    drop((http, admin, a, b, c, d));
}
