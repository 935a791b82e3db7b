//! A tokio unix listener on a Linux abstract name.

#[tableflip::main]
async fn main(#[listener("unix", "@tableflip-ui-unix-tokio")] sock: tokio::net::UnixListener) {
    let addr = sock.local_addr().unwrap();
    assert!(addr.as_pathname().is_none());
}
