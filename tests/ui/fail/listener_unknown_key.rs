#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080", port = "80")] a: tokio::net::TcpListener,
    #[listener("tcp", env = "A", env = "B")] b: tokio::net::TcpListener,
    #[listener("tcp", env = "")] c: tokio::net::TcpListener,
) {
    drop((a, b, c));
}
