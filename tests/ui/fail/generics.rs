#[tableflip::main]
async fn main<T: Default>(#[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener) {
    let _ = T::default();
    drop(http);
}
