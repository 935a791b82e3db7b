//! `-> Result<(), std::io::Error>`, with `?`.

#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener,
) -> Result<(), std::io::Error> {
    http.local_addr()?;
    Ok(())
}
