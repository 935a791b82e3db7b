#[tableflip::main]
async fn main(#[listener("tcp", ":8080", env = "HTTP_ADDR")] http: tokio::net::TcpListener) {
    drop(http);
}
