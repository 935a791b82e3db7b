//! A tokio TCP listener and the Handle; `?` in the body.

#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener,
    tf: tableflip::Handle,
) -> std::io::Result<()> {
    assert!(http.local_addr()?.ip().is_loopback());
    assert!(!tf.has_parent());
    Ok(())
}
