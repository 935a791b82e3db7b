#[tableflip::main]
async fn main(
    #[listener("unix", ":8080")] a: tokio::net::UnixListener,
    #[listener("unixgram", "127.0.0.1:53")] b: tokio::net::UnixDatagram,
    #[listener("tcp", "/run/app.sock")] c: tokio::net::TcpListener,
    #[listener("tcp4", "[::1]:80")] d: tokio::net::TcpListener,
    #[listener("udp6", "127.0.0.1:53")] e: tokio::net::UdpSocket,
) {
    drop((a, b, c, d, e));
}
