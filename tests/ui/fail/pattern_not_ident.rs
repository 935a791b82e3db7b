#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")] (a, b): (tokio::net::TcpListener, tokio::net::TcpListener),
    #[listener("tcp", ":8081")] _: tokio::net::TcpListener,
    #[listener("tcp", ":8082")] ref c: tokio::net::TcpListener,
) {
    drop((a, b, c));
}
