#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")] http: tokio::net::TcpListener,
    #[listener("tcp", ":8443")] http: tokio::net::TcpListener,
) {
    drop(http);
}
