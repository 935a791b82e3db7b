#[tableflip::main]
async fn main(
    #[listener("tcp", "localhost")] a: tokio::net::TcpListener,
    #[listener("tcp", ":http")] b: tokio::net::TcpListener,
    #[listener("tcp", "::1:80")] c: tokio::net::TcpListener,
    #[listener("unix", "")] d: tokio::net::UnixListener,
    #[listener("udp", env = "DNS_ADDR", default = "127.0.0.1:99999")] e: tokio::net::UdpSocket,
    #[listener("tcp", 8080)] f: tokio::net::TcpListener,
) {
    drop((a, b, c, d, e, f));
}
