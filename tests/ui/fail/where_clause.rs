#[tableflip::main]
async fn main(#[listener("tcp", "127.0.0.1:0")] http: tokio::net::TcpListener)
where
    u8: Copy,
{
    drop(http);
}
