#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080", name = "web")] http: tokio::net::TcpListener,
    #[listener("tcp", ":8443", name = "web")] https: tokio::net::TcpListener,
    #[listener("tcp", ":9090", name = "a:b")] admin: tokio::net::TcpListener,
) {
    drop((http, https, admin));
}
