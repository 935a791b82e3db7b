//! `flavor = "current_thread"`.

#[tableflip::main(flavor = "current_thread")]
async fn main(#[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener) {
    tokio::spawn(async move { drop(http) }).await.unwrap();
}
