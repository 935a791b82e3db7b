#[tableflip::main]
async fn main(
    #[listener("tcp")] a: tokio::net::TcpListener,
    #[listener] b: tokio::net::TcpListener,
    #[listener()] c: tokio::net::TcpListener,
    #[listener(env = "ADDR")] d: tokio::net::TcpListener,
) {
    drop((a, b, c, d));
}
