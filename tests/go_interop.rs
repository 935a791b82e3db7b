//! Interop with Go tableflip: live services upgraded from Go into Rust and back, over the
//! wire handshake of docs/protocol.md.
//!
//! The Go peers are the programs in `tests/go/`, built at run time against Debian's
//! `golang-github-cloudflare-tableflip-dev` (1.2.1+git20200514, the same protocol as
//! v1.2.3) by `support::go::go_peer`; without Go, each test prints one line and returns.
//! Every service runs from `<scratch>/svc`, and the test renames a Go or a Rust build over
//! that path before each upgrade, as a deploy would: both libraries start the successor
//! from the path the service was started with.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::go::go_peer;
use support::*;

/// These tests load the machine's two cores and share the subreaper: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the slow request in flight at each upgrade takes.
const SLOW_MS: u64 = 1500;

/// A service run from `<scratch>/svc`, whose binary the test swaps between upgrades.
struct Swappable {
    /// Declared first: dropped first, it kills and reaps every generation it tracked.
    svc: Service,
    exe: PathBuf,
    tag: String,
    scratch: Scratch,
    /// Dropped after `svc`: kills whatever the tracking missed.
    _strays: KillTagged,
}

impl Swappable {
    /// Installs `first` at `<scratch>/svc` and starts it with `envs` (plus the test tag).
    fn start(name: &str, first: &Path, envs: &[(&str, &str)]) -> Swappable {
        let scratch = Scratch::new(name);
        let tag = unique_tag(name);
        let strays = KillTagged(tag.clone());
        let exe = scratch.path("svc");
        install_file(first, &exe);
        let mut all = vec![(TAG_VAR, tag.as_str()), ("RUST_LOG", "info")];
        all.extend_from_slice(envs);
        let svc = Service::start(&exe, &scratch, &all);
        Swappable {
            svc,
            exe,
            tag,
            scratch,
            _strays: strays,
        }
    }

    /// The next upgrade starts `binary`.
    fn deploy(&self, binary: &Path) {
        swap_binary(&self.exe, binary);
    }

    /// Waits (bounded) for `old`, which was told to hand over, to exit; returns its code.
    fn wait_exit(&mut self, old: i32) -> Option<i32> {
        let code = if old == self.svc.first_pid() {
            self.svc.wait_first_exit()
        } else {
            wait_reaped(old, WAIT)
        };
        self.svc.forget(old);
        code
    }

    /// Stops `pid` with SIGTERM and checks that it exits 0 and leaves no process behind.
    fn stop(&mut self, pid: i32) {
        signal(pid, Signal::SIGTERM);
        assert_eq!(self.wait_exit(pid), Some(0), "exit code after SIGTERM");
        assert_eq!(
            tagged_pids(&self.tag),
            Default::default(),
            "processes left behind"
        );
    }

    fn log(&self) -> String {
        self.svc.stderr()
    }
}

/// The pid of whoever answers `GET /` at `addr`, waiting (bounded) for one other than `old`;
/// the service's log tells why if none does.
fn wait_new_pid(s: &Swappable, addr: SocketAddr, old: i32, what: &str) -> i32 {
    let mut pid = old;
    let deadline = std::time::Instant::now() + WAIT;
    while pid == old {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no new pid answered; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(5));
        pid = http_pid_of(addr).unwrap_or(old);
    }
    pid
}

#[test]
fn http_service_upgrades_go_rust_go_rust_under_load_and_finishes_slow_requests_on_the_old_side() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(go_http) = go_peer("http") else {
        return;
    };
    let rust_http = example("http");
    let addr = loopback(free_port());
    let mut s = Swappable::start(
        "go-http",
        &go_http,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "10s"),
        ],
    );
    let first = s.svc.first_pid();
    wait_until("the Go service answers", || {
        http_pid_of(addr).ok() == Some(first)
    });

    let load = HttpLoad::start(addr, 3, 3, Duration::from_secs(600));
    let mut pid = first;
    let steps = [
        ("Go -> Rust", &rust_http),
        ("Rust -> Go", &go_http),
        ("Go -> Rust", &rust_http),
    ];
    for (what, next_binary) in steps {
        s.deploy(next_binary);
        let slow = load
            .paused(|| PendingRequest::send_accepted_by(addr, &format!("/slow?ms={SLOW_MS}"), pid));
        signal(pid, Signal::SIGHUP);
        let next = wait_new_pid(&s, addr, pid, what);
        s.svc.track(next);
        assert_eq!(
            exe_inode(next),
            inode_of(&s.exe),
            "{what}: the new process runs the binary just deployed"
        );
        let answer = slow.answer().unwrap_or_else(|e| {
            panic!(
                "{what}: the slow request in flight failed: {e}; log:\n{}",
                s.log()
            )
        });
        assert_eq!(
            parse_pid(&answer),
            Some(pid),
            "{what}: the slow request finished on the old side"
        );
        assert_eq!(s.wait_exit(pid), Some(0), "{what}: old pid {pid} exit code");
        assert!(is_gone(pid), "{what}: old pid {pid} is still there");
        pid = next;
    }
    let report = load.finish();
    eprintln!(
        "go interop: 3 upgrades, {} requests ok, {} retried (keep-alive race), {} failed, pids {:?}",
        report.ok, report.retried, report.failed, report.pids
    );
    assert_eq!(
        report.failed,
        0,
        "failed requests: {:?}; log:\n{}",
        report.failures,
        s.log()
    );
    assert!(report.ok > 0, "the load ran");
    assert_eq!(
        http_pid_of(addr).ok(),
        Some(pid),
        "the last Rust process answers"
    );
    s.stop(pid);
}

#[test]
fn rust_service_serves_on_when_its_go_successor_exits_before_ready() {
    rust_service_serves_on_past_a_failing_go_successor("exit", "failing before ready: exit 3");
}

#[test]
fn rust_service_serves_on_when_its_go_successor_never_gets_ready() {
    rust_service_serves_on_past_a_failing_go_successor("hang", "failing before ready: never ready");
}

/// The Rust `http` example upgraded into the Go peer that fails readiness (`mode`, see
/// tests/go/http): the upgrade fails, the Rust process serves on without losing a request,
/// the Go child is reaped, and a later upgrade into Rust still works.
fn rust_service_serves_on_past_a_failing_go_successor(mode: &str, go_says: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(go_http) = go_peer("http") else {
        return;
    };
    let rust_http = example("http");
    let addr = loopback(free_port());
    let mut s = Swappable::start(
        &format!("go-fail-{mode}"),
        &rust_http,
        &[
            ("ADDR", &addr.to_string()),
            ("GO_PEER_FAIL_READY", mode),
            ("TABLEFLIP_UPGRADE_TIMEOUT", "2s"),
        ],
    );
    let first = s.svc.first_pid();
    wait_until("the Rust service answers", || {
        http_pid_of(addr).ok() == Some(first)
    });
    let load = HttpLoad::start(addr, 2, 2, Duration::from_secs(600));

    s.deploy(&go_http);
    signal(first, Signal::SIGHUP);
    wait_until("the Go successor to fail", || s.svc.log_count(go_says) > 0);
    // The Go child is reaped by its Rust parent (killed first, if it hangs): no zombie.
    wait_until("the failed Go child to be gone", || {
        children_of(first).is_empty()
    });
    wait_until("the failed upgrade to be logged", || {
        s.svc.log_count("upgrade failed") > 0
    });
    assert_eq!(
        http_pid_of(addr).ok(),
        Some(first),
        "the Rust process serves on"
    );
    assert_eq!(
        tagged_pids(&s.tag).into_iter().collect::<Vec<_>>(),
        vec![first],
        "only the Rust process is left"
    );

    // And it still upgrades.
    s.deploy(&rust_http);
    signal(first, Signal::SIGHUP);
    let next = wait_new_pid(&s, addr, first, "Rust -> Rust after the failure");
    s.svc.track(next);
    assert_eq!(s.wait_exit(first), Some(0), "old process exit code");

    let report = load.finish();
    assert_eq!(
        report.failed,
        0,
        "failed requests: {:?}; log:\n{}",
        report.failures,
        s.log()
    );
    assert!(report.ok > 0, "the load ran");
    s.stop(next);
}

/// What the multi-socket services listen on.
struct MultiAddrs {
    tcp: SocketAddr,
    tcp2: SocketAddr,
    udp: SocketAddr,
    unix: PathBuf,
    unixgram: PathBuf,
    state: PathBuf,
}

#[test]
fn go_service_with_every_kind_of_socket_and_a_file_hands_over_what_rust_claims_and_the_rest_is_closed()
 {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(go_multi) = go_peer("multi") else {
        return;
    };
    let rust_multi = example("go_peer_multi");
    let dir = Scratch::new("go-multi-files");
    let a = MultiAddrs {
        tcp: loopback(free_port()),
        tcp2: loopback(free_port()),
        udp: loopback(free_port()),
        unix: dir.path("stream.sock"),
        unixgram: dir.path("dgram.sock"),
        state: dir.path("state"),
    };
    std::fs::write(&a.state, "handed-over-by-go\n").expect("write the state file");
    let envs = [
        ("TCP_ADDR", a.tcp.to_string()),
        ("TCP2_ADDR", a.tcp2.to_string()),
        ("UDP_ADDR", a.udp.to_string()),
        ("UNIX_PATH", a.unix.display().to_string()),
        ("UNIXGRAM_PATH", a.unixgram.display().to_string()),
        ("STATE_PATH", a.state.display().to_string()),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = Swappable::start("go-multi", &go_multi, &envs);
    let go = s.svc.first_pid();

    // The Go service serves on all five sockets.
    wait_until("the Go service answers on tcp", || {
        greeting(|| TcpStream::connect(a.tcp)).is_some_and(|g| g.starts_with(&pid_prefix(go)))
    });
    for (what, g) in [
        ("tcp2", greeting(|| TcpStream::connect(a.tcp2))),
        ("unix", greeting(|| UnixStream::connect(&a.unix))),
    ] {
        assert_eq!(
            g.as_deref(),
            Some(format!("hello from pid {go}").as_str()),
            "Go on {what}"
        );
    }
    assert_eq!(udp_echo(a.udp), Some(go), "Go on udp");
    assert_eq!(
        unixgram_echo(&a.unixgram, &s.scratch),
        Some(go),
        "Go on unixgram"
    );

    s.deploy(&rust_multi);
    signal(go, Signal::SIGHUP);
    let mut rust = go;
    wait_until("the Rust successor answers on tcp", || {
        let g = greeting(|| TcpStream::connect(a.tcp)).unwrap_or_default();
        rust = parse_pid(&g).unwrap_or(go);
        rust != go
    });
    s.svc.track(rust);
    assert_eq!(s.wait_exit(go), Some(0), "the Go process exit code");

    // Claimed: tcp, unix and udp answer from the Rust process, which read the Go file.
    let expected = format!("hello from pid {rust} state=handed-over-by-go");
    for (what, g) in [
        ("tcp", greeting(|| TcpStream::connect(a.tcp))),
        ("unix", greeting(|| UnixStream::connect(&a.unix))),
    ] {
        assert_eq!(g.as_deref(), Some(expected.as_str()), "Rust on {what}");
    }
    assert_eq!(udp_echo(a.udp), Some(rust), "Rust on udp");
    assert!(
        is_socket_file(&a.unix),
        "the claimed unix socket's file is kept"
    );

    // Not claimed: closed everywhere; the unused unix socket's file is removed, as Go's
    // Fds.closeInherited does.
    let refused = TcpStream::connect(a.tcp2).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the unclaimed tcp listener is closed"
    );
    assert!(
        !listening_tcp_ports().contains(&a.tcp2.port()),
        "nothing listens on {} any more",
        a.tcp2
    );
    assert!(
        !a.unixgram.exists(),
        "the unclaimed unixgram socket's file is removed"
    );
    assert!(
        !bound_unix_paths().contains(&a.unixgram.display().to_string()),
        "the unclaimed unixgram socket is closed"
    );

    // A graceful stop removes the claimed unix socket's file, as Go's Stop does.
    s.stop(rust);
    assert!(
        !a.unix.exists(),
        "the unix socket file is removed at a stop"
    );
    drop(dir);
}

fn pid_prefix(pid: i32) -> String {
    format!("hello from pid {pid}")
}

/// Connects with `connect` and reads one line (without its newline).
fn greeting<S: std::io::Read>(connect: impl FnOnce() -> std::io::Result<S>) -> Option<String> {
    let conn = connect().ok()?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// Sends a datagram to `addr` and returns the pid that echoed it (bounded).
fn udp_echo(addr: SocketAddr) -> Option<i32> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(b"ping", addr).ok()?;
    let mut buf = [0u8; 256];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    echoed_pid(&buf[..n])
}

/// Sends a datagram to the unixgram socket at `path` and returns the pid that echoed it.
fn unixgram_echo(path: &Path, scratch: &Scratch) -> Option<i32> {
    let me = scratch.path(&format!("client-{}.sock", free_port()));
    let sock = UnixDatagram::bind(&me).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(b"ping", path).ok()?;
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).ok()?;
    let _ = std::fs::remove_file(&me);
    echoed_pid(&buf[..n])
}

/// `<PID> ping` -> PID.
fn echoed_pid(reply: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(reply).ok()?;
    let (pid, rest) = text.split_once(' ')?;
    (rest == "ping").then_some(())?;
    pid.parse().ok()
}

fn is_socket_file(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Ports of loopback TCP sockets in LISTEN state, from `/proc/net/tcp`.
fn listening_tcp_ports() -> Vec<u16> {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let port = cols.get(1)?.rsplit_once(':')?.1;
            (cols.get(3) == Some(&"0A")).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// Paths of every bound unix socket on the machine, from `/proc/net/unix`.
fn bound_unix_paths() -> Vec<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_owned))
        .collect()
}
