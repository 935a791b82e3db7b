#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")]
    #[listener("tcp", ":8081")]
    http: tokio::net::TcpListener,
) {
    drop(http);
}
