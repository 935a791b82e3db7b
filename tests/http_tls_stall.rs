//! Stalled TLS handshakes across an upgrade of the `https` example: a client that connects
//! and sends nothing, and one that sends half a ClientHello and stops, both accepted by the
//! old process before the upgrade. They must not hold the drain past their bound (the
//! handshake timeout, 10 s, well under `drain_timeout`), and must cost no other client a
//! request: hyper clients over TLS (HTTP/1.1 and HTTP/2) keep going throughout, 0 failed,
//! 0 retried.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// The first half of the ClientHello a rustls client sends to `localhost`.
fn half_a_client_hello(cert: &TestCert) -> Vec<u8> {
    use tokio_rustls::rustls::ClientConnection;
    use tokio_rustls::rustls::pki_types::ServerName;
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(cert.client_config(b"h2"), name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    assert!(
        hello.len() > 100 && hello[0] == 0x16,
        "a TLS handshake record"
    );
    hello.truncate(hello.len() / 2);
    hello
}

/// The server ends `conn` (end of file or a reset), within [`WAIT`].
fn assert_closed_by_server(conn: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + WAIT;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            // An alert, for the half ClientHello: read on to the end.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("{what}: still open after {WAIT:?}")
            }
            Err(_) => return,
        }
        assert!(Instant::now() < deadline, "{what}: still open");
    }
}

#[test]
fn stalled_tls_handshakes_hold_the_drain_only_to_their_bound_and_cost_no_request() {
    let scratch = Scratch::new("https-stall");
    let cert = TestCert::generate(&scratch);
    let tag = unique_tag("https-stall");
    let _strays = KillTagged(tag.clone());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pid_file = scratch.path("pid");
    let mut svc = Service::start(
        &example("https"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TLS_CERT", cert.cert_path.to_str().unwrap()),
            ("TLS_KEY", cert.key_path.to_str().unwrap()),
            ("TABLEFLIP_PID_FILE", pid_file.to_str().unwrap()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "30s"),
            ("RUST_LOG", "info"),
            (TAG_VAR, &tag),
        ],
    );
    let old = svc.first_pid();
    let named = || -> Option<i32> { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() };
    wait_until("the first ready", || named() == Some(old));

    use HttpVersion::{H1, H2};
    let load = HyperLoad::start(addr, Some(&cert), &[H1, H1, H2, H2]);
    std::thread::sleep(Duration::from_millis(300));

    // Two handshakes that stall, on connections the old process accepted.
    let mut silent = connect_accepted_by(addr, old);
    let mut half = connect_accepted_by(addr, old);
    half.write_all(&half_a_client_hello(&cert))
        .expect("send half a ClientHello");
    std::thread::sleep(Duration::from_millis(100));

    let upgraded_at = Instant::now();
    signal(old, Signal::SIGHUP);
    wait_until("the successor is ready", || {
        named().is_some_and(|p| p != old)
    });
    let new = named().unwrap();
    svc.track(new);
    // The old process drains: the stalled handshakes end at their bound, it exits 0, and
    // the drain never reaches drain_timeout.
    assert_eq!(svc.wait_first_exit(), Some(0), "{}", svc.stderr());
    let gone_after = upgraded_at.elapsed();
    assert_closed_by_server(&mut silent, "the silent connection");
    assert_closed_by_server(&mut half, "the half ClientHello");
    // Load on the successor after the old one is gone, too.
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish();
    let log = svc.stderr();
    eprintln!(
        "old process gone {gone_after:.1?} after the signal; hyper over TLS: {} ok, {} retried, {} failed, pids {:?}",
        seen.ok, seen.retried, seen.failed, seen.pids
    );
    assert!(
        !log.contains("drain timeout"),
        "the stalled handshakes held the drain to drain_timeout:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(seen.failed, 0, "{:#?}", seen.failures);
    assert_eq!(seen.retried, 0, "{:#?}", seen.failures);
    assert!(
        seen.pids.contains(&old) && seen.pids.contains(&new),
        "the clients were served by both processes: {:?}",
        seen.pids
    );
    signal(new, Signal::SIGTERM);
    assert_eq!(wait_reaped(new, WAIT), Some(0), "SIGTERM exit code");
    svc.forget(new);
}
