// The fallback keeps the body type-checked against the parameters: only the option is
// reported.
#[tableflip::main(pid = "/run/app.pid", worker_thread = 2)]
async fn main(#[listener("tcp", ":8080")] http: tokio::net::TcpListener) -> std::io::Result<()> {
    let (conn, _) = http.accept().await?;
    drop(conn);
    Ok(())
}
