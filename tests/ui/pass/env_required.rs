//! An address from the environment without a default: the variable is required at start-up.
//! The attribute also goes on a function not named `main`, which `main` then calls.

#[tableflip::main]
async fn serve(#[listener("udp", env = "TABLEFLIP_UI_DNS_ADDR")] dns: tokio::net::UdpSocket) {
    assert!(dns.local_addr().unwrap().ip().is_loopback());
}

fn main() -> std::process::ExitCode {
    // SAFETY: no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("TABLEFLIP_UI_DNS_ADDR", "127.0.0.1:0");
    }
    serve()
}
