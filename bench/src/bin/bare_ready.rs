//! The start-up baseline for instruction counts (`valgrind --tool=callgrind`): a bare
//! multi-threaded tokio program that binds `$ADDR` (default `127.0.0.1:0`), says it is ready
//! (one line on stdout) and exits. Compare with `tableflip_ready`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("ready {}", listener.local_addr()?);
    Ok(())
}
