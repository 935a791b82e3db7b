//! What the drain does to each connection the old process accepted, one at a time, on the
//! `http` example (built on `tableflip::axum::serve`): a request sent after the drain began
//! on a connection accepted before is answered; a keep-alive connection gets
//! `Connection: close` on its next answer; an idle one is closed cleanly (end of file, no
//! reset); an HTTP/2 connection finishes its streams and ends with a graceful GOAWAY.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// The `http` example, answering on a fresh port.
fn start(scratch: &Scratch) -> (Service, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let svc = Service::start(
        &example("http"),
        scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "20s"),
        ],
    );
    let pid = svc.first_pid();
    let deadline = std::time::Instant::now() + WAIT;
    while http_pid_of(addr).ok() != Some(pid) {
        assert!(
            std::time::Instant::now() < deadline && !is_zombie(pid) && !is_gone(pid),
            "{pid} does not answer on {addr}; its log:\n{}",
            svc.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (svc, addr)
}

/// Sends `GET /` (keep-alive) and reads one answer: its head (lower-cased) and body.
fn get(conn: &mut TcpStream) -> (String, String) {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the request");
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        let n = conn.read(&mut buf).expect("read the answer");
        assert!(n > 0, "closed before a whole answer: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if body.len() >= length {
                return (head, body.to_owned());
            }
        }
    }
    panic!("no whole answer: {data:?}");
}

/// The server closes `conn` cleanly: end of file, not a reset.
fn assert_closed_cleanly(conn: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes: {:?}", &buf[..n]),
        Err(e) => panic!("not a clean close: {e}"),
    }
}

fn wait_drain_began(svc: &Service) {
    wait_until("the drain begins", || {
        svc.stderr().contains("shutting down")
    });
}

#[test]
fn a_request_sent_after_the_drain_began_on_a_connection_accepted_before_is_answered() {
    let scratch = Scratch::new("http-drain-late");
    let (mut svc, addr) = start(&scratch);
    let pid = svc.first_pid();
    // Accepted, but its client has sent nothing yet: the request is still on its way (in
    // the socket buffer, or not sent) when the drain begins. `axum::serve`'s graceful
    // shutdown drops such a connection.
    let mut conn = connect_accepted_by(addr, pid);
    signal(pid, Signal::SIGTERM);
    wait_drain_began(&svc);
    let (head, body) = get(&mut conn);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(
        parse_pid(&body),
        Some(pid),
        "answered by the draining process"
    );
    assert_closed_cleanly(&mut conn);
    assert_eq!(svc.wait_first_exit(), Some(0));
}

#[test]
fn keep_alive_gets_connection_close_on_its_next_answer_and_an_idle_one_is_closed_cleanly() {
    let scratch = Scratch::new("http-drain-keepalive");
    let (mut svc, addr) = start(&scratch);
    let pid = svc.first_pid();
    let mut busy = connect_accepted_by(addr, pid);
    let mut idle = connect_accepted_by(addr, pid);
    for conn in [&mut busy, &mut idle] {
        let (head, body) = get(conn);
        assert!(
            !head.contains("connection: close"),
            "before the drain: {head}"
        );
        assert_eq!(parse_pid(&body), Some(pid));
    }
    signal(pid, Signal::SIGTERM);
    wait_drain_began(&svc);
    // The busy client's next request is answered, and told to go elsewhere afterwards.
    let (head, body) = get(&mut busy);
    assert!(
        head.contains("connection: close"),
        "after the drain began: {head}"
    );
    assert_eq!(parse_pid(&body), Some(pid));
    assert_closed_cleanly(&mut busy);
    // The idle one is closed by the server after the idle grace period, with an end of
    // file: its client reconnects (to the successor) before its next request.
    assert_closed_cleanly(&mut idle);
    assert_eq!(svc.wait_first_exit(), Some(0));
}

#[test]
fn an_http2_connection_finishes_its_streams_and_ends_with_a_graceful_goaway() {
    let scratch = Scratch::new("http-drain-h2");
    let (mut svc, addr) = start(&scratch);
    let pid = svc.first_pid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
        let conn = tokio::spawn(conn);
        let get = |client: &mut h2::client::SendRequest<hyper::body::Bytes>, path: &str| {
            let req = hyper::Request::get(format!("http://{addr}{path}"))
                .body(())
                .unwrap();
            client.send_request(req, true).expect("open a stream").0
        };
        let first = get(&mut client, "/")
            .await
            .expect("an answer before the drain");
        assert_eq!(first.status(), 200);
        let slow = get(&mut client, "/slow?ms=1500");
        signal(pid, Signal::SIGTERM);
        tokio::task::spawn_blocking({
            let stderr = svc.stderr_path.clone();
            move || {
                wait_until("the drain begins", || {
                    std::fs::read_to_string(&stderr)
                        .unwrap_or_default()
                        .contains("shutting down")
                })
            }
        })
        .await
        .unwrap();
        // The stream open when the drain began finishes on the old process.
        let res = tokio::time::timeout(WAIT, slow)
            .await
            .expect("the slow answer in time")
            .expect("the slow stream is answered");
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            bytes.extend_from_slice(&chunk.expect("body"));
        }
        assert_eq!(parse_pid(&String::from_utf8_lossy(&bytes)), Some(pid));
        // Then a GOAWAY: the client may not open streams any more, and the connection ends
        // without an error.
        let refused =
            tokio::time::timeout(WAIT, std::future::poll_fn(|cx| client.poll_ready(cx))).await;
        let closed = tokio::time::timeout(WAIT, conn).await;
        assert!(
            matches!(refused, Ok(Err(_))) || closed.is_ok(),
            "no GOAWAY: {refused:?}"
        );
        let closed = closed.expect("the connection ends").unwrap();
        assert!(
            closed.is_ok(),
            "the connection ended with an error: {closed:?}"
        );
    });
    assert_eq!(svc.wait_first_exit(), Some(0));
}
