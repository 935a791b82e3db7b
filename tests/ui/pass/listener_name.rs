//! `name =`: the systemd FileDescriptorName= the listener claims under socket activation.

#[tableflip::main]
async fn main(
    #[listener("tcp", "127.0.0.1:0", name = "http")] http: tokio::net::TcpListener,
    #[listener(
        "udp",
        env = "TABLEFLIP_UI_UNSET_ADDR",
        default = "127.0.0.1:0",
        name = "dns"
    )]
    dns: tokio::net::UdpSocket,
) {
    drop((http, dns));
}
