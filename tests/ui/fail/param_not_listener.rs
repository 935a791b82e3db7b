#[tableflip::main]
async fn main(
    #[listener("tcp", ":8080")] http: tokio::net::TcpListener,
    port: u16,
    tf: &tableflip::Handle,
) {
    drop((http, port, tf));
}
