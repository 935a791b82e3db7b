//! A std TCP listener, on tcp4.

#[tableflip::main]
async fn main(
    #[listener("tcp4", "127.0.0.1:0")] http: std::net::TcpListener,
) -> std::io::Result<()> {
    assert!(http.local_addr()?.is_ipv4());
    Ok(())
}
