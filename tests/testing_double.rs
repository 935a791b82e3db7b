//! A service body unit-tested with `tableflip::testing::TestService`: the body below is
//! written exactly as it would run under `#[tableflip::main(ready = "manual")]`, and the
//! tests drive its world (ready, connections, handover, stop, upgrade requests) without a
//! process, a signal or a handshake.

use std::io;
use std::time::Duration;

use tableflip::testing::TestService;
use tableflip::{ConnHandoff, Handle, ListenerSpec, Listeners, ShutdownReason};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

// ---- the user's service: a line echo whose sessions survive upgrades ---------------------

/// The body: says ready, serves until shutdown.
async fn body(listener: TcpListener, tf: Handle) -> io::Result<ShutdownReason> {
    tf.ready().map_err(io::Error::other)?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (conn, peer) = accepted?;
                let handoff = tf.add_conn("tcp", &peer.to_string(), &conn).map_err(io::Error::other)?;
                let tf = tf.clone();
                let in_flight = tf.track();
                tokio::spawn(async move {
                    session(conn, handoff, tf).await;
                    drop(in_flight);
                });
            }
            reason = tf.shutdown() => return Ok(reason),
        }
    }
}

/// How a session ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The client left.
    Closed,
    /// Handed to the successor, with the partial line it had read.
    Released(Vec<u8>),
    /// The service stopped.
    Stopped,
}

/// One session: echoes lines; `upgrade` asks for an upgrade and says how it went.
async fn session(mut conn: TcpStream, handoff: ConnHandoff, tf: Handle) -> Ended {
    let mut pending = Vec::new();
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let answer = if line == b"upgrade\n" {
                match tf.upgrade().await {
                    Ok(pid) => format!("upgraded to {pid}\n").into_bytes(),
                    Err(e) => format!("upgrade failed: {e}\n").into_bytes(),
                }
            } else {
                line
            };
            if conn.write_all(&answer).await.is_err() {
                return Ended::Closed;
            }
        }
        tokio::select! {
            biased;
            reason = tf.shutdown() => {
                if reason == ShutdownReason::Stopped {
                    return Ended::Stopped;
                }
                let unread = pending.clone();
                assert!(handoff.release(&pending), "the successor has this session");
                return Ended::Released(unread);
            }
            read = conn.read_buf(&mut pending) => {
                if read.unwrap_or(0) == 0 {
                    return Ended::Closed;
                }
            }
        }
    }
}

// ---- the tests -----------------------------------------------------------------------

/// A connection to `addr` with line reading.
async fn client(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(
        timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap(),
    )
}

async fn ask(c: &mut BufReader<TcpStream>, line: &str) -> String {
    c.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(WAIT, c.read_line(&mut answer))
        .await
        .unwrap()
        .unwrap();
    answer.trim_end().to_owned()
}

#[tokio::test]
async fn the_body_says_ready_and_every_open_session_counts_as_in_flight() {
    let double = TestService::new();
    let listener = double.tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(!double.is_ready());
    let served = tokio::spawn(body(listener, double.handle()));
    timeout(WAIT, double.wait_ready()).await.unwrap();
    assert!(double.is_ready());

    let mut a = client(addr).await;
    let mut b = client(addr).await;
    assert_eq!(ask(&mut a, "one").await, "one");
    assert_eq!(ask(&mut b, "two").await, "two");
    assert_eq!(double.in_flight(), 2);
    drop(a);
    drop(b);
    timeout(WAIT, double.wait_idle()).await.unwrap();
    assert_eq!(double.in_flight(), 0);

    double.stop();
    let reason = timeout(WAIT, served).await.unwrap().unwrap().unwrap();
    assert_eq!(reason, ShutdownReason::Stopped);
}

#[tokio::test]
async fn at_a_handover_a_session_stops_reading_and_releases_its_partial_line() {
    let double = TestService::new();
    let listener = double.tcp_listener().unwrap();
    let tf = double.handle();
    let mut c = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (conn, peer) = listener.accept().await.unwrap();
    let handoff = tf.add_conn("tcp", &peer.to_string(), &conn).unwrap();
    let ended = tokio::spawn(session(conn, handoff, tf.clone()));

    c.write_all(b"whole\npart").await.unwrap();
    let mut echoed = [0; 6];
    timeout(WAIT, c.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"whole\n");
    double.hand_over();
    assert_eq!(
        timeout(WAIT, ended).await.unwrap().unwrap(),
        Ended::Released(b"part".to_vec())
    );
    assert_eq!(tf.shutdown().await, ShutdownReason::Upgraded);
    assert!(tf.is_draining());
}

#[tokio::test]
async fn an_upgrade_asked_by_the_body_is_counted_and_fails_without_starting_anything() {
    let double = TestService::new();
    let listener = double.tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(body(listener, double.handle()));
    let mut c = client(addr).await;
    let answer = ask(&mut c, "upgrade").await;
    assert!(answer.starts_with("upgrade failed: "), "{answer}");
    assert_eq!(double.upgrade_requests(), 1);
    assert_eq!(double.shutdown_reason(), None, "still serving");
    assert_eq!(ask(&mut c, "still here").await, "still here");

    double.hand_over();
    let reason = timeout(WAIT, served).await.unwrap().unwrap().unwrap();
    assert_eq!(reason, ShutdownReason::Upgraded);
}

#[tokio::test]
async fn the_service_closure_runs_unchanged_on_the_doubles_listeners() {
    // What `Service::builder().listener(..).run(main)` would call `main` with.
    let main = |mut listeners: Listeners, tf: Handle| {
        let http: TcpListener = listeners.take("http")?;
        Ok::<_, tableflip::Error>(body(http, tf))
    };
    let double = TestService::new();
    let listeners = double
        .listeners([ListenerSpec::new("http", "tcp", "127.0.0.1:0")])
        .unwrap();
    let tf = double.handle();
    // The body's listener is the one the double bound: it is the one recorded for handover.
    let served = tokio::spawn(main(listeners, tf.clone()).unwrap());
    timeout(WAIT, double.wait_ready()).await.unwrap();
    tf.stop();
    let reason = timeout(WAIT, served).await.unwrap().unwrap().unwrap();
    assert_eq!(reason, ShutdownReason::Stopped);
    assert_eq!(double.shutdown_reason(), Some(ShutdownReason::Stopped));
}

#[tokio::test]
async fn unix_streams_and_connected_udp_sockets_are_handed_over_like_tcp() {
    let double = TestService::new();
    let tf = double.handle();
    let (unix, _peer) = tokio::net::UnixStream::pair().unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect("127.0.0.1:9").await.unwrap();
    let unix_handoff = tf.add_conn("unix", "peer-1", &unix).unwrap();
    let udp_handoff = tf.add_conn("udp", "127.0.0.1:9", &udp).unwrap();
    assert_eq!(
        (unix_handoff.network(), unix_handoff.addr()),
        ("unix", "peer-1")
    );
    // A socket that does not fit its network is refused, with the reason.
    let err = tf.add_conn("tcp", "x", &udp).unwrap_err();
    assert!(err.to_string().contains("conn:tcp:x"), "{err}");
    let listener = double.tcp_listener().unwrap();
    let err = tf.add_conn("tcp", "y", &listener).unwrap_err();
    assert!(format!("{err:?}").contains("listening"), "{err:?}");

    double.hand_over();
    assert!(unix_handoff.release(b""));
    assert!(udp_handoff.release(b""));
}

#[tokio::test]
async fn a_connection_withdrawn_before_the_handover_is_not_passed_on() {
    let double = TestService::new();
    let tf = double.handle();
    let (kept, _a) = tokio::net::UnixStream::pair().unwrap();
    let (ended, _b) = tokio::net::UnixStream::pair().unwrap();
    let kept = tf.add_conn("unix", "kept", &kept).unwrap();
    drop(tf.add_conn("unix", "ended", &ended).unwrap()); // the session ended
    // What the next process would get: the kept session and the release channel.
    assert_eq!(double.fds().len(), 2);
    double.hand_over();
    assert!(kept.release(b"partial"), "the kept session was passed on");
    // Recorded after the handover began: the successor never got it; serve it on.
    let (late, _c) = tokio::net::UnixStream::pair().unwrap();
    let late = tf.add_conn("unix", "late", &late).unwrap();
    assert!(!late.release(b""), "a session the successor never got");
}
