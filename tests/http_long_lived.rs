//! Long-lived answers across the drain: a streamed answer (server-sent events) learns from
//! the handle that the drain began and ends by itself, and is not cut meanwhile; an upgraded connection (what a
//! WebSocket is) keeps working through the drain, past every grace period, and is cut
//! only at `drain_timeout`.
//!
//! Over HTTP/2, a stream opened with extended CONNECT (RFC 8441: `:protocol websocket`, how
//! WebSockets run over HTTP/2; hyper-util's `auto` builder supports it once
//! `enable_connect_protocol` is set, as `tableflip::http` does) lives across an upgrade: the
//! old process serves it after the GOAWAY and waits for it.
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

/// The server: `GET /` answers `pid <PID>`; `GET /events` streams `tick` lines until the
/// drain begins, then ends; `GET /echo` with `Upgrade: echo` switches protocols and echoes
/// bytes; an extended CONNECT to `/tunnel` (HTTP/2) answers 200, writes `pid <PID>\n` and
/// echoes bytes until the client ends the stream.
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

    async fn tunnel(req: Request) -> Response {
        if req.extensions().get::<hyper::ext::Protocol>().is_none() {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Body::from("not an extended CONNECT\n"))
                .unwrap();
        }
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let hello = format!("pid {}\n", std::process::id());
            if io.write_all(hello.as_bytes()).await.is_err() {
                return;
            }
            let (mut r, mut w) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
        Response::new(Body::empty())
    }

    Service::builder()
        .listener(ListenerSpec::from_env("listener", "tcp", "ADDR", None))
        .run(|mut listeners, tf| {
            let listener: tokio::net::TcpListener = listeners.take("listener")?;
            let pid = std::process::id();
            let app = axum::Router::new()
                .route("/", get(move || async move { format!("pid {pid}\n") }))
                .route("/events", get(events))
                .route("/echo", get(echo))
                .route("/tunnel", axum::routing::any(tunnel))
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

/// In the server role (the test binary started again by a test), serves and exits.
fn serve_if_server() {
    if std::env::var_os(ROLE).is_some() {
        std::process::exit(match server() {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        });
    }
}

/// Starts this binary as the server of test `name` on a fresh port.
fn start_server(name: &str, scratch: &Scratch, drain_timeout: &str) -> (Service, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture"])
        .env(ROLE, "1")
        .env("ADDR", addr.to_string())
        .env("TABLEFLIP_DRAIN_TIMEOUT", drain_timeout)
        .env("RUST_LOG", "info");
    (Service::spawn(cmd, scratch), addr)
}

#[test]
fn a_streamed_answer_ends_when_the_drain_begins_and_an_upgraded_connection_lives_to_drain_timeout()
{
    serve_if_server();
    let scratch = Scratch::new("http-long-lived");
    let (mut svc, addr) = start_server(
        "a_streamed_answer_ends_when_the_drain_begins_and_an_upgraded_connection_lives_to_drain_timeout",
        &scratch,
        "4s",
    );
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

/// An extended CONNECT stream over HTTP/2 (what a WebSocket over HTTP/2 is) opened on the
/// old process keeps working across an upgrade, past the GOAWAY delay and the idle grace
/// period, while new connections reach the successor; once the client ends it, the old
/// process exits at once (well before `drain_timeout`), with 0.
#[test]
fn an_http2_extended_connect_stream_lives_across_an_upgrade_and_the_old_process_waits_for_it() {
    serve_if_server();
    let scratch = Scratch::new("http2-tunnel");
    let (mut svc, addr) = start_server(
        "an_http2_extended_connect_stream_lives_across_an_upgrade_and_the_old_process_waits_for_it",
        &scratch,
        "20s",
    );
    let old = svc.first_pid();
    wait_until("the server answers", || http_pid_of(addr).ok() == Some(old));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut tunnel, mut back) = within(&rt, "open the tunnel", open_tunnel(addr));
    let greeting = within(&rt, "the greeting", read_tunnel(&mut back, 1));
    assert_eq!(
        greeting,
        format!("pid {old}\n"),
        "served by the old process"
    );
    let mut echo = |msg: &str| {
        tunnel
            .send_data(hyper::body::Bytes::from(msg.to_owned()), false)
            .expect("send on the tunnel");
        within(&rt, "the echo", read_tunnel(&mut back, msg.len()))
    };
    assert_eq!(echo("before\n"), "before\n");

    signal(old, Signal::SIGHUP);
    let new = wait_new_http_pid_of(addr, old);
    svc.track(new);
    // Past the GOAWAY delay (500 ms) and the idle grace period (1 s): the stream still works,
    // on the old process, which waits for it.
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(echo("during the drain\n"), "during the drain\n");
    assert!(!is_gone(old), "the old process waits for the open stream");
    assert_eq!(
        http_pid_of(addr).ok(),
        Some(new),
        "new connections reach the successor"
    );

    // The client ends the stream: the server's echo ends its side too, and the old process,
    // with nothing left in flight, exits 0.
    tunnel
        .send_data(hyper::body::Bytes::new(), true)
        .expect("end the stream");
    let rest = within(
        &rt,
        "the end of the stream",
        read_tunnel(&mut back, usize::MAX),
    );
    assert_eq!(rest, "", "nothing after the echo");
    assert_eq!(svc.wait_first_exit(), Some(0), "{}", svc.stderr());
    let log = svc.stderr();
    assert!(
        !log.contains("drain timeout"),
        "the drain ended by itself:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    signal(new, Signal::SIGTERM);
    assert_eq!(wait_reaped(new, WAIT), Some(0), "SIGTERM exit code");
}

/// Runs `f` on `rt`, bounded by [`WAIT`].
fn within<T>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> T {
    rt.block_on(async { tokio::time::timeout(WAIT, f).await })
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

/// Opens an HTTP/2 connection and an extended CONNECT stream (`:protocol websocket`) to
/// `/tunnel`; the stream's two halves.
async fn open_tunnel(addr: SocketAddr) -> (h2::SendStream<hyper::body::Bytes>, h2::RecvStream) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    // The server's SETTINGS must have arrived (SETTINGS_ENABLE_CONNECT_PROTOCOL).
    for _ in 0..500 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "the server offers extended CONNECT"
    );
    let mut req = axum::http::Request::builder()
        .method(axum::http::Method::CONNECT)
        .uri(format!("http://{addr}/tunnel"))
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (answer, send) = client.send_request(req, false).expect("send CONNECT");
    let answer = answer.await.expect("CONNECT answer");
    assert_eq!(answer.status(), axum::http::StatusCode::OK, "{answer:?}");
    (send, answer.into_body())
}

/// Reads `n` bytes from the stream (or, with `usize::MAX`, up to its end) as text.
async fn read_tunnel(back: &mut h2::RecvStream, n: usize) -> String {
    let mut got = Vec::new();
    while got.len() < n {
        match back.data().await {
            Some(Ok(chunk)) => {
                let _ = back.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            Some(Err(e)) => panic!("the stream broke: {e}"),
            None => break,
        }
    }
    String::from_utf8(got).unwrap()
}
