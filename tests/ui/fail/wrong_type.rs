#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0")] http: String,
    #[listener("tcp", "127.0.0.1:1")] dns: tokio::net::UdpSocket,
    #[listener("unix", "/tmp/x.sock")] u: std::os::unix::net::UnixDatagram,
) -> i32 {
    let _ = (http, dns, u);
    5
}
