//! A std unix listener on a socket file (unlinked again at the stop).

#[tableflip::main]
async fn main(
    #[listener("unix", "/tmp/tableflip-ui-unix-std.sock")] sock: std::os::unix::net::UnixListener,
) {
    let addr = sock.local_addr().unwrap();
    assert_eq!(
        addr.as_pathname(),
        Some(std::path::Path::new("/tmp/tableflip-ui-unix-std.sock"))
    );
}
