//! Long-lived answers across the drain: a streamed answer (server-sent events) learns from
//! the handle that the drain began and ends by itself, and is not cut meanwhile; an upgraded connection (what a
//! WebSocket is) keeps working through the drain, past every grace period, and is cut
//! only at `drain_timeout`.
//!
//! The server is this test binary itself, started again with `TF_HTTP_LONG_LIVED_SERVER`
//! set: a small axum service on `tableflip::axum::serve`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

const ROLE: &str = "TF_HTTP_LONG_LIVED_SERVER";

/// The server: `GET /events` streams `tick` lines until the drain begins, then ends;
/// `GET /echo` with `Upgrade: echo` switches protocols and echoes bytes.
fn server() -> std::process::ExitCode {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::response::Response;
    use axum::routing::get;
    use tableflip::{Handle, ListenerSpec, Service};

    async fn events(State(tf): State<Handle>) -> Response {
        Response::new(Body::from_stream(ticks(tf)))
    }

    async fn echo(req: Request) -> Response {
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "echo")
            .body(Body::empty())
            .unwrap()
    }

    Service::builder()
        .listener(ListenerSpec::from_env("listener", "tcp", "ADDR", None))
        .run(|mut listeners, tf| {
            let listener: tokio::net::TcpListener = listeners.take("listener")?;
            let app = axum::Router::new()
                .route("/events", get(events))
                .route("/echo", get(echo))
                .with_state(tf.clone());
            Ok(async move { tableflip::axum::serve(listener, app, &tf).await })
        })
}

/// `tick` every 50 ms until the drain begins, then (after a last 1.5 s of work, longer than
/// the idle grace period) `bye` and the end of the answer.
fn ticks(
    tf: tableflip::Handle,
) -> impl futures_util::Stream<Item = Result<&'static str, std::convert::Infallible>> {
    futures_util::stream::unfold(Some(tf), |tf| async move {
        let tf = tf?;
        tokio::select! {
            _ = tf.shutdown() => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Some((Ok("bye\n"), None))
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => Some((Ok("tick\n"), Some(tf))),
        }
    })
}

#[test]
fn a_streamed_answer_ends_when_the_drain_begins_and_an_upgraded_connection_lives_to_drain_timeout()
{
    if std::env::var_os(ROLE).is_some() {
        std::process::exit(match server() {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        });
    }
    let scratch = Scratch::new("http-long-lived");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "a_streamed_answer_ends_when_the_drain_begins_and_an_upgraded_connection_lives_to_drain_timeout",
        "--nocapture",
    ])
    .env(ROLE, "1")
    .env("ADDR", addr.to_string())
    .env("TABLEFLIP_DRAIN_TIMEOUT", "4s")
    .env("RUST_LOG", "info");
    let mut svc = Service::spawn(cmd, &scratch);
    let pid = svc.first_pid();
    let deadline = Instant::now() + WAIT;
    let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    let mut events = loop {
        if let Ok(c) = connect() {
            break c;
        }
        assert!(Instant::now() < deadline, "no server: {}", svc.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    events.set_read_timeout(Some(WAIT)).unwrap();
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut events = BufReader::new(events);

    let mut echo = connect().expect("connect");
    echo.set_read_timeout(Some(WAIT)).unwrap();
    echo.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            echo.read(&mut byte).unwrap(),
            1,
            "upgrade answer cut: {head:?}"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let round_trip = |echo: &mut TcpStream, msg: &[u8]| -> std::io::Result<Vec<u8>> {
        echo.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        echo.read_exact(&mut back)?;
        Ok(back)
    };
    assert_eq!(round_trip(&mut echo, b"before").unwrap(), b"before");

    // Events flow; then the drain begins.
    let mut text = String::new();
    while !text.contains("tick") {
        assert!(
            events.read_line(&mut text).unwrap() > 0,
            "events cut: {text:?}"
        );
    }
    let drain_began = Instant::now();
    signal(pid, Signal::SIGTERM);
    // The streamed answer learns it and, after its last 1.5 s of work (longer than the
    // idle grace period, and not cut meanwhile), ends cleanly: `bye`, then the end of the
    // chunked body.
    let mut rest = String::new();
    for _ in 0..10_000 {
        if rest.ends_with("\r\n0\r\n\r\n") {
            break;
        }
        assert!(
            events.read_line(&mut rest).unwrap() > 0,
            "events cut: {rest:?}"
        );
    }
    assert!(rest.contains("bye"), "{rest:?}");
    assert!(
        drain_began.elapsed() > Duration::from_secs(1),
        "ended by the drain"
    );

    // The upgraded connection works past the idle grace period (1 s) and the GOAWAY delay,
    // while the process drains: it is in flight.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(round_trip(&mut echo, b"during").unwrap(), b"during");
    assert!(
        !is_gone(pid),
        "the process waits for the upgraded connection"
    );
    // At drain_timeout (4 s) the process exits, 0, and the connection goes with it.
    assert_eq!(svc.wait_first_exit(), Some(0));
    assert!(
        drain_began.elapsed() >= Duration::from_secs(3),
        "cut only at drain_timeout"
    );
    assert!(svc.stderr().contains("drain timeout"), "{}", svc.stderr());
    let mut buf = [0u8; 16];
    assert!(
        matches!(echo.read(&mut buf), Ok(0) | Err(_)),
        "the connection is gone"
    );
}
