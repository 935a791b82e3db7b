//! An HTTP client loop for tests that kill the server: it tells connections *refused* (no
//! socket was listening: what the fd store must prevent) from requests *lost in flight* (the
//! killed process had accepted them: the only loss a crash may cost).
//!
//! Some clients keep one connection alive across requests, others open a fresh connection
//! for every request. A request on a reused connection that the server closed before any
//! byte of an answer is sent again on a fresh connection and counted as `retried`, as HTTP
//! clients do for idempotent requests. Bounded in count and time; stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::parse_pid;

/// What a [`CrashLoad`] saw.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Requests answered `200` with a pid.
    pub ok: usize,
    /// Connections refused (or otherwise not established): no socket was listening.
    pub refused: usize,
    /// Requests sent on an established connection that never got a whole answer: the
    /// process that had accepted the connection died.
    pub lost: usize,
    /// Requests on a reused connection closed before any byte, sent again on a fresh one.
    pub retried: usize,
    /// The first failures, each with its class.
    pub failures: Vec<String>,
    /// Pids that answered.
    pub pids: std::collections::BTreeSet<i32>,
}

impl CrashReport {
    fn merge(&mut self, r: CrashReport) {
        self.ok += r.ok;
        self.refused += r.refused;
        self.lost += r.lost;
        self.retried += r.retried;
        self.failures.extend(r.failures);
        self.pids.extend(r.pids);
    }

    fn note(&mut self, msg: String) {
        if self.failures.len() < 20 {
            self.failures.push(msg);
        }
    }
}

/// Client threads against the `http` example; see the module documentation.
pub struct CrashLoad {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<CrashReport>>,
}

impl CrashLoad {
    /// Starts `keep_alive + fresh` clients; each stops after `bound` at the latest.
    pub fn start(addr: SocketAddr, keep_alive: usize, fresh: usize, bound: Duration) -> CrashLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..keep_alive + fresh)
            .map(|i| {
                let stop = stop.clone();
                std::thread::spawn(move || client(addr, i < keep_alive, bound, &stop))
            })
            .collect();
        CrashLoad { stop, handles }
    }

    /// How many clients run: at most that many requests can be in flight at any moment.
    pub fn clients(&self) -> usize {
        self.handles.len()
    }

    /// Stops the clients and adds up what they saw.
    pub fn finish(mut self) -> CrashReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = CrashReport::default();
        for h in self.handles.drain(..) {
            total.merge(h.join().expect("crash load thread"));
        }
        total
    }
}

impl Drop for CrashLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// How one exchange ended.
enum Exchange {
    /// The pid, and whether the server will close the connection.
    Answered(i32, bool),
    /// Closed or reset before any byte of an answer.
    NothingBack(String),
    /// Cut after part of an answer, or a wrong answer.
    Broken(String),
}

fn client(addr: SocketAddr, reuse: bool, bound: Duration, stop: &AtomicBool) -> CrashReport {
    let deadline = Instant::now() + bound;
    let mut r = CrashReport::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    for _ in 0..10_000_000 {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        let (mut c, reused) = match conn.take() {
            Some(c) => (c, true),
            None => match connect(addr) {
                Ok(c) => (c, false),
                Err(e) => {
                    r.refused += 1;
                    r.note(format!("refused: {e}"));
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        match exchange(&mut c, reuse) {
            Exchange::Answered(pid, close) => {
                r.ok += 1;
                r.pids.insert(pid);
                if reuse && !close {
                    conn = Some(c);
                }
            }
            Exchange::NothingBack(_) if reused => r.retried += 1,
            Exchange::NothingBack(e) | Exchange::Broken(e) => {
                r.lost += 1;
                r.note(format!(
                    "lost in flight ({} connection): {e}",
                    if reused { "reused" } else { "fresh" }
                ));
            }
        }
    }
    r
}

fn connect(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(BufReader::new(s))
}

fn exchange(conn: &mut BufReader<TcpStream>, keep_alive: bool) -> Exchange {
    let request: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    };
    if let Err(e) = conn.get_mut().write_all(request) {
        return Exchange::NothingBack(format!("write: {e}"));
    }
    let mut status = String::new();
    match conn.read_line(&mut status) {
        Ok(0) => return Exchange::NothingBack("closed before any byte".into()),
        Ok(_) => {}
        Err(e) if status.is_empty() => return Exchange::NothingBack(format!("read: {e}")),
        Err(e) => return Exchange::Broken(format!("status line cut: {e}")),
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Exchange::Broken(format!("status {status:?}"));
    }
    let (mut length, mut close) = (None, !keep_alive);
    for _ in 0..100 {
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) => return Exchange::Broken("headers cut".into()),
            Ok(_) => {}
            Err(e) => return Exchange::Broken(format!("headers: {e}")),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.trim() == "close" {
            close = true;
        }
    }
    let Some(length) = length else {
        return Exchange::Broken("no content-length".into());
    };
    let mut body = vec![0u8; length.min(4096)];
    if let Err(e) = conn.read_exact(&mut body) {
        return Exchange::Broken(format!("body: {e}"));
    }
    let body = String::from_utf8_lossy(&body);
    match parse_pid(&body) {
        Some(pid) => Exchange::Answered(pid, close),
        None => Exchange::Broken(format!("body {body:?}")),
    }
}
