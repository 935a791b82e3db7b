//! An address from the environment, with a default (the variable is not set here).

#[tableflip::main]
async fn main(
    #[listener("tcp", env = "TABLEFLIP_UI_UNSET_ADDR", default = "127.0.0.1:0")]
    http: tokio::net::TcpListener,
) -> std::io::Result<()> {
    assert!(http.local_addr()?.ip().is_loopback());
    Ok(())
}
