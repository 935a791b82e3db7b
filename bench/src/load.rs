//! The load generator: `conns` tokio tasks on loopback, each a closed loop of requests,
//! bounded in count and time. It classifies every failure and records every latency.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The bound on one request (connect, send, whole answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Connect, read the greeting to EOF, close (the `hello` example).
    Hello,
    /// One `GET /` per connection (`Connection: close`).
    HttpClose,
    /// `GET /` again and again on one connection; a new one only when the server closes.
    HttpKeepAlive,
}

/// A short name of a protocol, for file names and progress.
pub(crate) fn mode_tag(p: Protocol) -> &'static str {
    match p {
        Protocol::Hello => "hello",
        Protocol::HttpClose => "close",
        Protocol::HttpKeepAlive => "keepalive",
    }
}

/// How requests ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ok: u64,
    /// Connection refused.
    pub(crate) refused: u64,
    /// Reset (or broken pipe) on a fresh connection, or after part of the answer.
    pub(crate) reset: u64,
    /// The connection closed in the middle of an answer (or before any byte, on a fresh
    /// connection).
    pub(crate) short_read: u64,
    /// No complete answer within the request timeout.
    pub(crate) timeout: u64,
    /// Anything else (a wrong status, an unparsable answer, another error).
    pub(crate) other: u64,
    /// Keep-alive only: the server closed a reused connection before any byte of the
    /// answer. Every HTTP client retries this once on a new connection (hyper's does); so
    /// does this one, and the retry's own outcome is counted as usual.
    pub(crate) retried: u64,
}

impl Counts {
    /// Every failure (retried ones are not failures).
    pub(crate) fn failed(&self) -> u64 {
        self.refused + self.reset + self.short_read + self.timeout + self.other
    }

    /// Adds `o` to these counts.
    pub(crate) fn add(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.refused += o.refused;
        self.reset += o.reset;
        self.short_read += o.short_read;
        self.timeout += o.timeout;
        self.other += o.other;
        self.retried += o.retried;
    }
}

/// One successful request: when it started (µs after the run's base instant) and how long
/// it took (µs), a retry included.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) start_us: u64,
    pub(crate) latency_us: u64,
}

/// What a run saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) counts: Counts,
    pub(crate) samples: Vec<Sample>,
    /// The first few failure messages.
    pub(crate) errors: Vec<String>,
}

/// Limits of a run: it ends at `stop`, at `deadline`, or after `max_per_conn` requests on
/// each connection, whichever comes first.
#[derive(Clone)]
pub(crate) struct Limits {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) deadline: Instant,
    pub(crate) max_per_conn: u64,
}

/// Runs `conns` clients against `addr` until the limits say stop.
pub(crate) async fn run(
    addr: SocketAddr,
    protocol: Protocol,
    conns: usize,
    base: Instant,
    limits: Limits,
) -> Outcome {
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr, protocol, base, limits.clone())))
        .collect();
    let mut total = Outcome::default();
    for t in tasks {
        if let Ok(o) = t.await {
            total.counts.add(&o.counts);
            total.samples.extend(o.samples);
            for e in o.errors {
                if total.errors.len() < 10 {
                    total.errors.push(e);
                }
            }
        }
    }
    total
}

/// Why one attempt failed: the error, and whether any byte of the answer had arrived.
struct Failure {
    kind: ErrorKind,
    got_bytes: bool,
    msg: String,
}

impl Failure {
    fn io(e: std::io::Error, got_bytes: bool) -> Failure {
        Failure {
            kind: e.kind(),
            got_bytes,
            msg: e.to_string(),
        }
    }

    fn other(msg: String) -> Failure {
        Failure {
            kind: ErrorKind::InvalidData,
            got_bytes: true,
            msg,
        }
    }

    /// The server closed (FIN or RST) before any byte of the answer.
    fn closed_before_answer(&self) -> bool {
        !self.got_bytes
            && matches!(
                self.kind,
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionAborted
            )
    }

    fn count(&self, c: &mut Counts) {
        match self.kind {
            ErrorKind::ConnectionRefused => c.refused += 1,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                c.reset += 1
            }
            ErrorKind::UnexpectedEof => c.short_read += 1,
            ErrorKind::TimedOut => c.timeout += 1,
            _ => c.other += 1,
        }
    }
}

async fn client(addr: SocketAddr, protocol: Protocol, base: Instant, limits: Limits) -> Outcome {
    let mut out = Outcome::default();
    let mut buf = Vec::with_capacity(1024);
    // Keep-alive: the open connection and whether it has answered before.
    let mut conn: Option<(TcpStream, bool)> = None;
    for _ in 0..limits.max_per_conn {
        if limits.stop.load(Ordering::Relaxed) || Instant::now() >= limits.deadline {
            break;
        }
        let started = Instant::now();
        let result = match protocol {
            Protocol::Hello => timed(hello(addr, &mut buf)).await,
            Protocol::HttpClose => timed(http_close(addr, &mut buf)).await,
            Protocol::HttpKeepAlive => {
                let mut retry_left = true;
                loop {
                    let reused = conn.as_ref().is_some_and(|(_, used)| *used);
                    match timed(keep_alive(addr, &mut conn, &mut buf)).await {
                        Err(f) if reused && retry_left && f.closed_before_answer() => {
                            out.counts.retried += 1;
                            retry_left = false;
                            conn = None;
                        }
                        Err(f) => {
                            conn = None;
                            break Err(f);
                        }
                        Ok(()) => break Ok(()),
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                out.counts.ok += 1;
                out.samples.push(Sample {
                    start_us: (started - base).as_micros() as u64,
                    latency_us: started.elapsed().as_micros() as u64,
                });
            }
            Err(f) => {
                f.count(&mut out.counts);
                if out.errors.len() < 10 {
                    out.errors.push(f.msg);
                }
            }
        }
    }
    out
}

async fn timed(f: impl Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(Failure {
            kind: ErrorKind::TimedOut,
            got_bytes: false,
            msg: format!("no answer within {REQUEST_TIMEOUT:?}"),
        }),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| Failure::io(e, false))?;
    socket
        .bind(crate::probe::source_addr())
        .map_err(|e| Failure::io(e, false))?;
    let s = socket
        .connect(addr)
        .await
        .map_err(|e| Failure::io(e, false))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn hello(addr: SocketAddr, buf: &mut Vec<u8>) -> Result<(), Failure> {
    let mut s = connect(addr).await?;
    buf.clear();
    s.read_to_end(buf)
        .await
        .map_err(|e| Failure::io(e, !buf.is_empty()))?;
    if buf.is_empty() {
        return Err(Failure::io(ErrorKind::UnexpectedEof.into(), false));
    }
    if !buf.starts_with(b"hello from pid ") || !buf.ends_with(b"\n") {
        return Err(Failure::other(format!(
            "unexpected greeting {:?}",
            String::from_utf8_lossy(buf)
        )));
    }
    Ok(())
}

const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

async fn http_close(addr: SocketAddr, buf: &mut Vec<u8>) -> Result<(), Failure> {
    let mut s = connect(addr).await?;
    s.write_all(GET_CLOSE)
        .await
        .map_err(|e| Failure::io(e, false))?;
    read_response(&mut s, buf).await.map(|_| ())
}

async fn keep_alive(
    addr: SocketAddr,
    conn: &mut Option<(TcpStream, bool)>,
    buf: &mut Vec<u8>,
) -> Result<(), Failure> {
    if conn.is_none() {
        *conn = Some((connect(addr).await?, false));
    }
    let (s, used) = conn.as_mut().expect("just set");
    s.write_all(GET).await.map_err(|e| Failure::io(e, false))?;
    let close = read_response(s, buf).await?;
    *used = true;
    if close {
        *conn = None;
    }
    Ok(())
}

/// Reads one answer; returns whether the server will close the connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, Failure> {
    buf.clear();
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| Failure::io(e, !buf.is_empty()))?;
        if n == 0 {
            return Err(Failure::io(
                ErrorKind::UnexpectedEof.into(),
                !buf.is_empty(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(Failure::other(format!(
            "unexpected answer {:?}",
            head.lines().next()
        )));
    }
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Failure::other("no content-length".into()))?;
    let close = header("connection") == Some("close");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.map_err(|e| Failure::io(e, true))?;
        if n == 0 {
            return Err(Failure::io(ErrorKind::UnexpectedEof.into(), true));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(close)
}
