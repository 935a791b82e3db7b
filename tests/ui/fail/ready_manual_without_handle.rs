#[tableflip::main(ready = "manual")]
async fn main(#[listener("tcp", ":8080")] http: tokio::net::TcpListener) {
    drop(http);
}
