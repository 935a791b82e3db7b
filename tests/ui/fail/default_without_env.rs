#[tableflip::main]
async fn main(
    #[listener("tcp", default = ":8080")] http: tokio::net::TcpListener,
    #[listener("tcp", ":8443", default = ":8080")] https: tokio::net::TcpListener,
) {
    drop((http, https));
}
