#[tableflip::main]
#[tokio::main]
async fn main(#[listener("tcp", ":8080")] http: tokio::net::TcpListener) {
    drop(http);
}
