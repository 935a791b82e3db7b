//! Blocking probes that ask a service which process answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// How long a probe waits for a connection or an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to sleep between two probes while waiting for a new process.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_micros(200);

/// The number after "pid" in a line such as `hello from pid 1234` or `pid 1234`.
pub(crate) fn parse_pid(text: &str) -> Option<i32> {
    text.split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
}

/// A loopback source address for the next client connection, taken in turn from 62 500
/// addresses in 127.0.0.0/8 (port 0: the kernel picks one).
///
/// Every request on a new connection leaves the server's side in TIME_WAIT for 60 s. From
/// one source address, tens of thousands of connections a second soon reuse a source port
/// whose old connection is still in TIME_WAIT there; when the kernel cannot recycle it, the
/// SYN is answered with an ACK, the client resets and retries its SYN a second later: a
/// 1 s stall that has nothing to do with the server under test. Spreading the sources makes
/// such a reuse rare.
pub(crate) fn source_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 62_500;
    let ip = Ipv4Addr::new(127, 1 + (n / 250) as u8, 1 + (n % 250) as u8, 1);
    SocketAddr::new(ip.into(), 0)
}

/// A blocking connection to `addr` from the next [`source_addr`].
pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&source_addr().into())?;
    socket.connect_timeout(&addr.into(), PROBE_TIMEOUT)?;
    Ok(socket.into())
}

/// Connects to a hello service and returns the pid in its greeting.
pub(crate) fn hello(addr: SocketAddr) -> std::io::Result<i32> {
    let s = connect(addr)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    parse_pid(&line).ok_or_else(|| std::io::Error::other(format!("unexpected answer {line:?}")))
}

/// `GET /` on the `http` example (one request, `Connection: close`); returns the pid in
/// the answer.
pub(crate) fn http(addr: SocketAddr) -> std::io::Result<i32> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if !text.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("unexpected answer {text:?}")));
    }
    parse_pid(body).ok_or_else(|| std::io::Error::other(format!("no pid in {body:?}")))
}

/// Calls `f` every [`PROBE_INTERVAL`] until it gives a value, at most `bound` long.
pub(crate) fn poll<T>(bound: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pid;

    #[test]
    fn parse_pid_reads_the_number_after_pid() {
        assert_eq!(parse_pid("hello from pid 1234\n"), Some(1234));
        assert_eq!(parse_pid("pid 77\n"), Some(77));
        assert_eq!(parse_pid("no number"), None);
    }
}
