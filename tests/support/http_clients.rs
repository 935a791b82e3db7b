//! Real HTTP clients against the HTTP examples: `wrk` (HTTP/1.1 keep-alive), `h2load`
//! (HTTP/2, h2c and TLS) and a hyperium client (hyper's HTTP/1 client; for HTTP/2 the `h2`
//! crate hyper is built on, which reports a received GOAWAY before a request is sent, as
//! RFC 9113 wants clients to honour it) that counts failed requests and the requests it had
//! to retry on a fresh connection; certificates made at run time with rcgen.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Scratch, parse_pid, read_all};

/// The first of `tools` that is not on `PATH`, if any: a test that needs it says so in
/// one line and returns (`.ci/run` installs them: Debian `wrk`, `nghttp2-client`).
pub fn missing_tool<'a>(tools: &[&'a str]) -> Option<&'a str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    tools
        .iter()
        .copied()
        .find(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: Vec<u8>,
}

impl TestCert {
    pub fn generate(scratch: &Scratch) -> TestCert {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(names).expect("rcgen certificate");
        let cert_path = scratch.path("cert.pem");
        let key_path = scratch.path("key.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write cert.pem");
        std::fs::write(&key_path, key_pair.serialize_pem()).expect("write key.pem");
        TestCert {
            cert_path,
            key_path,
            der: cert.der().to_vec(),
        }
    }

    /// A rustls client configuration that trusts this certificate and offers `alpn`.
    pub fn client_config(&self, alpn: &[u8]) -> Arc<tokio_rustls::rustls::ClientConfig> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots
            .add(self.der.clone().into())
            .expect("add the test certificate");
        let mut config = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }
}

/// A child process killed and reaped on drop.
struct Reaped(Option<Child>);

impl Reaped {
    fn take(&mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (bounded) for a child; kills it if it overstays. Returns its stdout.
fn output_within(mut child: Child, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{child:?} ran past {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    read_all(child.stdout.take().expect("stdout"))
}

/// What wrk reported.
#[derive(Debug, Default)]
pub struct WrkReport {
    pub requests: u64,
    /// connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    pub non_2xx: u64,
    pub output: String,
}

impl WrkReport {
    pub fn errors(&self) -> u64 {
        self.socket_errors.iter().sum::<u64>() + self.non_2xx
    }
}

/// `wrk` keeping `conns` HTTP/1.1 keep-alive connections busy until [`Wrk::finish`].
pub struct Wrk(Reaped);

impl Wrk {
    pub fn start(url: &str, conns: usize) -> Wrk {
        let child = Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{conns}"),
                "-d300s",
                "--timeout",
                "10s",
                url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wrk (Debian package wrk)");
        Wrk(Reaped(Some(child)))
    }

    /// Stops wrk (SIGINT: it stops and prints its summary) and parses the summary.
    pub fn finish(mut self) -> WrkReport {
        let child = self.0.take();
        super::signal(child.id() as i32, nix::sys::signal::Signal::SIGINT);
        let output = output_within(child, Duration::from_secs(30));
        let mut report = WrkReport::default();
        for line in output.lines().map(str::trim) {
            if let Some((n, _)) = line.split_once(" requests in ") {
                report.requests = n.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                for (i, part) in rest.split(',').enumerate().take(4) {
                    let n = part.split_whitespace().last().unwrap_or("0");
                    report.socket_errors[i] = n.parse().unwrap_or(u64::MAX);
                }
            } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
                report.non_2xx = n.trim().parse().unwrap_or(u64::MAX);
            }
        }
        report.output = output;
        report
    }
}

/// What the h2load runs reported, summed.
#[derive(Debug, Default)]
pub struct H2loadReport {
    pub runs: u64,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Output of the first runs that lost something.
    pub bad_runs: Vec<String>,
}

/// `h2load` run after run (each `-n 60 -c 2 -m 2`: two HTTP/2 connections, two streams
/// each) until [`H2load::finish`].
///
/// h2load does not reconnect after a GOAWAY: every request it could not send any more
/// counts as failed. The server sends its GOAWAY `goaway_delay` (500 ms) into the drain so
/// that such a client finishes a short exchange: each run must be short next to it, also
/// with this test's debug build under a loaded machine (TLS handshakes included), or it
/// measures the machine's load rather than the drain. 300 requests on four connections took
/// up to 1.4 s at a load average of 12; 60 on two take a fifth of that.
pub struct H2load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<H2loadReport>,
}

impl H2load {
    pub fn start(url: &str) -> H2load {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (url.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut report = H2loadReport::default();
            for _ in 0..100_000 {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let child = Command::new("h2load")
                    .args(["-n", "60", "-c", "2", "-m", "2", &url])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start h2load (Debian package nghttp2-client)");
                let mut child = Reaped(Some(child));
                let output = output_within(child.take(), Duration::from_secs(60));
                report.add(&output);
            }
            report
        });
        H2load { stop, thread }
    }

    pub fn finish(self) -> H2loadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("h2load thread")
    }
}

impl H2loadReport {
    /// Adds one run's `requests: N total, N started, N done, N succeeded, N failed,
    /// N errored, N timeout` line.
    fn add(&mut self, output: &str) {
        self.runs += 1;
        let line = output
            .lines()
            .find(|l| l.starts_with("requests:"))
            .unwrap_or_default();
        let field = |name: &str| -> u64 {
            line.split(',')
                .find(|part| part.trim_end().ends_with(name))
                .and_then(|part| part.split_whitespace().rev().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        let (total, succeeded) = (field("total"), field("succeeded"));
        let (failed, errored, timeout) = (field("failed"), field("errored"), field("timeout"));
        self.total += total;
        self.succeeded += succeeded;
        self.failed += failed;
        self.errored += errored;
        self.timeout += timeout;
        let lost = line.is_empty() || succeeded != total || failed + errored + timeout > 0;
        if lost && self.bad_runs.len() < 5 {
            self.bad_runs.push(output.to_owned());
        }
    }

    pub fn lost(&self) -> u64 {
        self.failed + self.errored + self.timeout + (self.total - self.succeeded.min(self.total))
    }
}

/// HTTP/1.1 or HTTP/2, for the hyper client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    H1,
    H2,
}

/// What the hyper clients saw.
#[derive(Debug, Default)]
pub struct HyperReport {
    /// Requests answered `200` with a pid.
    pub ok: u64,
    /// Requests on a reused connection that got no answer at all (the server closed or
    /// reset the connection, or refused the stream): retried once on a fresh connection,
    /// as pooling clients do.
    pub retried: u64,
    /// Everything else: a fresh connection that failed, a retry that failed, a cut answer.
    pub failed: u64,
    pub failures: Vec<String>,
    pub pids: BTreeSet<i32>,
}

impl HyperReport {
    fn merge(&mut self, other: HyperReport) {
        self.ok += other.ok;
        self.retried += other.retried;
        self.failed += other.failed;
        self.pids.extend(other.pids);
        for f in other.failures {
            self.note(f);
        }
    }

    fn note(&mut self, failure: String) {
        if self.failures.len() < 20 {
            self.failures.push(failure);
        }
    }
}

/// hyper clients, each keeping one connection (HTTP/1.1 keep-alive, or HTTP/2) busy with
/// one request after another, until [`HyperLoad::finish`].
pub struct HyperLoad {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<HyperReport>,
}

impl HyperLoad {
    /// `clients` lists the version of each client; with `cert`, over TLS (ALPN `h2` or
    /// `http/1.1`).
    pub fn start(addr: SocketAddr, cert: Option<&TestCert>, clients: &[HttpVersion]) -> HyperLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let tls = cert.map(|c| (c.client_config(b"http/1.1"), c.client_config(b"h2")));
        let (clients, flag) = (clients.to_vec(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let tasks: Vec<_> = clients
                    .into_iter()
                    .map(|version| {
                        let tls = tls.as_ref().map(|(h1, h2)| match version {
                            HttpVersion::H1 => h1.clone(),
                            HttpVersion::H2 => h2.clone(),
                        });
                        tokio::spawn(hyper_client(addr, version, tls, flag.clone()))
                    })
                    .collect();
                let mut total = HyperReport::default();
                for task in tasks {
                    total.merge(task.await.expect("hyper client task"));
                }
                total
            })
        });
        HyperLoad { stop, thread }
    }

    pub fn finish(self) -> HyperReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("hyper load thread")
    }
}

type Body = http_body_util::Empty<hyper::body::Bytes>;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(h2::client::SendRequest<hyper::body::Bytes>),
}

/// Why an exchange failed: `unanswered` if no byte of an answer came back.
struct Failure {
    unanswered: bool,
    msg: String,
}

async fn connect(
    addr: SocketAddr,
    version: HttpVersion,
    tls: &Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<Sender, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => handshake(tcp, version).await,
        Some(config) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")
                .expect("server name");
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            handshake(tls, version).await
        }
    }
}

async fn handshake<T>(io: T, version: HttpVersion) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    match version {
        HttpVersion::H1 => {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
        HttpVersion::H2 => {
            let (sender, conn) = h2::client::handshake(io.into_inner())
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            Ok(Sender::H2(sender))
        }
    }
}

impl Sender {
    /// Can a request still be sent? Not after the server said it closes the connection
    /// (GOAWAY, or the connection is gone): a client then opens a new one without sending.
    async fn ready(&mut self) -> bool {
        let ready = async {
            match self {
                Sender::H1(s) => s.ready().await.is_ok(),
                Sender::H2(s) => std::future::poll_fn(|cx| s.poll_ready(cx)).await.is_ok(),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .unwrap_or(false)
    }

    /// `GET /`: the pid, and whether the server closes the connection after this answer.
    /// `Ok(None)`: the client refused to send it, the server having said GOAWAY since
    /// `ready` (nothing was sent; a client uses another connection).
    async fn get(
        &mut self,
        addr: SocketAddr,
        scheme: &str,
    ) -> Result<Option<(i32, bool)>, Failure> {
        let exchange = async {
            match self {
                Sender::H1(s) => h1_get(s).await,
                Sender::H2(s) => h2_get(s, addr, scheme).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(out) => out,
            Err(_) => Err(Failure {
                unanswered: false,
                msg: "no complete answer within 10 s".into(),
            }),
        }
    }
}

fn cut(msg: String) -> Failure {
    Failure {
        unanswered: false,
        msg,
    }
}

async fn h1_get(
    s: &mut hyper::client::conn::http1::SendRequest<Body>,
) -> Result<Option<(i32, bool)>, Failure> {
    use http_body_util::BodyExt;
    let req = hyper::Request::get("/")
        .header(hyper::header::HOST, "localhost")
        .body(Body::new())
        .expect("request");
    let res = s.send_request(req).await.map_err(|e| Failure {
        unanswered: true,
        msg: format!("no answer: {e:?}"),
    })?;
    if res.status() != hyper::StatusCode::OK {
        return Err(cut(format!("status {}", res.status())));
    }
    let close = res
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| cut(format!("body: {e:?}")))?
        .to_bytes();
    Ok(Some((pid_in(&body)?, close)))
}

async fn h2_get(
    s: &mut h2::client::SendRequest<hyper::body::Bytes>,
    addr: SocketAddr,
    scheme: &str,
) -> Result<Option<(i32, bool)>, Failure> {
    let req = hyper::Request::get(format!("{scheme}://{addr}/"))
        .body(())
        .expect("request");
    let Ok((answer, _)) = s.send_request(req, true) else {
        return Ok(None);
    };
    let res = answer.await.map_err(|e| Failure {
        unanswered: true,
        msg: format!("no answer: {e:?}"),
    })?;
    if res.status() != hyper::StatusCode::OK {
        return Err(cut(format!("status {}", res.status())));
    }
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    for _ in 0..1000 {
        let Some(chunk) = body.data().await else {
            break;
        };
        let chunk = chunk.map_err(|e| cut(format!("body: {e:?}")))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some((pid_in(&bytes)?, false)))
}

fn pid_in(body: &[u8]) -> Result<i32, Failure> {
    let body = String::from_utf8_lossy(body);
    parse_pid(&body).ok_or_else(|| cut(format!("body {body:?}")))
}

async fn hyper_client(
    addr: SocketAddr,
    version: HttpVersion,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    stop: Arc<AtomicBool>,
) -> HyperReport {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut r = HyperReport::default();
    // The connection, and whether an answer already came back on it.
    let mut conn: Option<Sender> = None;
    for _ in 0..10_000_000 {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        let (mut sender, reused) = match conn.take() {
            Some(s) => (s, true),
            None => match connect(addr, version, &tls).await {
                Ok(s) => (s, false),
                Err(e) => {
                    r.failed += 1;
                    r.note(format!("{version:?} fresh connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        if !sender.ready().await {
            if !reused {
                r.failed += 1;
                r.note(format!("{version:?} fresh connection not ready"));
            }
            continue;
        }
        let outcome = match sender.get(addr, scheme).await {
            Err(e) if reused && e.unanswered => {
                // What a pooling client retries: the request got no answer at all on a
                // connection it had used before. Count it, and retry once.
                r.retried += 1;
                r.note(format!("{version:?} retried: {}", e.msg));
                match connect(addr, version, &tls).await {
                    Ok(mut fresh) => {
                        let out = sender_retry(&mut fresh, addr, scheme).await;
                        sender = fresh;
                        out
                    }
                    Err(e) => Err(format!("retry: {e}")),
                }
            }
            Err(e) => Err(format!(
                "{} connection: {}",
                if reused { "reused" } else { "fresh" },
                e.msg
            )),
            Ok(None) => continue,
            Ok(Some(ok)) => Ok(ok),
        };
        match outcome {
            Ok((pid, close)) => {
                r.ok += 1;
                r.pids.insert(pid);
                if !close {
                    conn = Some(sender);
                }
            }
            Err(msg) => {
                r.failed += 1;
                r.note(format!("{version:?} {msg}"));
            }
        }
    }
    r
}

async fn sender_retry(
    sender: &mut Sender,
    addr: SocketAddr,
    scheme: &str,
) -> Result<(i32, bool), String> {
    if !sender.ready().await {
        return Err("retry: fresh connection not ready".into());
    }
    match sender.get(addr, scheme).await {
        Ok(Some(ok)) => Ok(ok),
        Ok(None) => Err("retry: refused on a fresh connection".into()),
        Err(e) => Err(format!("retry: {}", e.msg)),
    }
}
