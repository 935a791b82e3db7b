//! The `#[tableflip::main]` examples driven from outside as real processes: every listener
//! kind is handed over with the same socket, in-flight requests finish on the old process,
//! stops drain, hooks run, manual readiness holds the parent, bad input is one line.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// The inode of the socket in `/proc/net/<table>` whose line matches `pred`.
fn socket_inode(tables: &[&str], pred: impl Fn(&[&str]) -> bool) -> Option<String> {
    tables.iter().find_map(|t| {
        let text = std::fs::read_to_string(format!("/proc/net/{t}")).ok()?;
        text.lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            pred(&cols).then(|| {
                // tcp/udp: inode is column 9; unix: column 6.
                if *t == "unix" {
                    cols[6].to_owned()
                } else {
                    cols[9].to_owned()
                }
            })
        })
    })
}

/// The listening TCP socket's inode for a loopback port.
fn tcp_listener_inode(port: u16) -> Option<String> {
    let hex = format!(":{port:04X}");
    socket_inode(&["tcp", "tcp6"], |c| {
        c.len() > 9 && c[1].ends_with(&hex) && c[3] == "0A"
    })
}

fn udp_inode(port: u16) -> Option<String> {
    let hex = format!(":{port:04X}");
    socket_inode(&["udp", "udp6"], |c| c.len() > 9 && c[1].ends_with(&hex))
}

/// The listening unix socket at `path` (accepted connections show the same path; the
/// listener is the one with `__SO_ACCEPTCON` in its flags).
fn unix_inode(path: &str) -> Option<String> {
    socket_inode(&["unix"], |c| {
        c.len() > 7 && c[7] == path && c[3] == "00010000"
    })
}

/// Does process `pid` hold the socket with this inode?
fn holds(pid: i32, inode: &str) -> bool {
    fds_of(pid)
        .iter()
        .any(|f| f.ends_with(&format!("socket:[{inode}]")))
}

/// Sends `GET path` from a thread once `pid` serves, and waits (bounded) until `pid` has
/// accepted it: a new socket appears among its descriptors. (Not by reading
/// `/proc/net/tcp`: while other processes churn through connections, a listing can skip
/// the very entry it is asked for.)
fn request_accepted_by(pid: i32, addr: SocketAddr, path: &str) -> PendingRequest {
    PendingRequest::send_accepted_by(addr, path, pid)
}

fn wait_new_http_pid(addr: SocketAddr, old: i32) -> i32 {
    let mut pid = old;
    wait_until("a new pid over HTTP", || {
        pid = http_pid_of(addr).unwrap_or(old);
        pid != old
    });
    pid
}

#[test]
fn hello_sighup_hands_over_the_same_tcp_socket_and_runs_the_hooks() {
    let scratch = Scratch::new("hello");
    let port = free_port();
    let addr = loopback(port);
    let svc = Service::start(&example("hello"), &scratch, &[("ADDR", &addr.to_string())]);
    wait_until("hello answers", || hello(addr).is_ok());
    let old = svc.first_pid();
    let inode = tcp_listener_inode(port).expect("listening socket");
    assert!(holds(old, &inode));

    let load = Load::start(addr, 2, 1_000_000, Duration::from_secs(60));
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(addr, old);
    svc.track(new);
    assert_eq!(
        wait_reaped(old, WAIT),
        Some(0),
        "the old process exits 0 after a handover"
    );
    let report = load.finish();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(
        holds(new, &inode),
        "the new process serves the very same socket"
    );
    let log = svc.stderr();
    assert!(
        log.contains("on_shutdown: hello is going away") && log.contains("reason=Upgraded"),
        "the on_shutdown hook ran in the old process:\n{log}"
    );
}

#[test]
fn udp_sighup_hands_over_the_same_socket() {
    let scratch = Scratch::new("udp");
    let port = free_port();
    let addr = loopback(port);
    let svc = Service::start(&example("udp"), &scratch, &[("ADDR", &addr.to_string())]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ask = |msg: &str| -> Option<String> {
        client.send_to(msg.as_bytes(), addr).ok()?;
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let old = svc.first_pid();
    wait_until("udp echoes", || ask("ping").is_some());
    assert_eq!(ask("ping").unwrap(), format!("{old} ping"));
    let inode = udp_inode(port).expect("udp socket");

    signal(old, Signal::SIGHUP);
    assert_eq!(wait_reaped(old, WAIT), Some(0));
    let mut reply = String::new();
    wait_until("an echo from the new pid", || {
        reply = ask("again").unwrap_or_default();
        !reply.is_empty() && !reply.starts_with(&format!("{old} "))
    });
    let new: i32 = reply.split(' ').next().unwrap().parse().unwrap();
    svc.track(new);
    assert_eq!(reply, format!("{new} again"));
    assert!(
        holds(new, &inode),
        "the new process holds the same udp socket"
    );
}

#[test]
fn unix_sighup_hands_over_the_same_socket_and_stop_removes_the_file() {
    let scratch = Scratch::new("unix");
    let path = scratch.path("hello.sock");
    let path_s = path.to_str().unwrap().to_owned();
    let svc = Service::start(&example("unix"), &scratch, &[("SOCKET", &path_s)]);
    let ask = || -> std::io::Result<i32> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(WAIT))?;
        let line = read_all(&mut s);
        parse_pid(&line).ok_or_else(|| std::io::Error::other(line))
    };
    wait_until("unix answers", || ask().is_ok());
    let old = svc.first_pid();
    assert_eq!(ask().unwrap(), old);
    let inode = unix_inode(&path_s).expect("unix socket");

    signal(old, Signal::SIGHUP);
    let mut new = old;
    wait_until("a new pid on the unix socket", || {
        new = ask().unwrap_or(old);
        new != old
    });
    svc.track(new);
    assert_eq!(wait_reaped(old, WAIT), Some(0));
    assert!(path.exists(), "the socket file stays across an upgrade");
    assert!(
        holds(new, &inode),
        "the new process holds the same unix socket"
    );

    signal(new, Signal::SIGTERM);
    assert_eq!(wait_reaped(new, WAIT), Some(0), "SIGTERM exits 0");
    assert!(!path.exists(), "a stop removes the socket file");
}

#[test]
fn http_request_in_flight_finishes_on_the_old_process() {
    let scratch = Scratch::new("http");
    let port = free_port();
    let addr = loopback(port);
    let svc = Service::start(
        &example("http"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "20s"),
        ],
    );
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let old = svc.first_pid();
    // The slow request is being served by the old process before the upgrade starts.
    let slow = request_accepted_by(old, addr, "/slow?ms=1500");
    signal(old, Signal::SIGHUP);
    let new = wait_new_http_pid(addr, old);
    svc.track(new);
    let body = slow.answer().expect("the in-flight request completes");
    assert_eq!(parse_pid(&body), Some(old), "answered by the old process");
    assert_eq!(
        wait_reaped(old, WAIT),
        Some(0),
        "the old process exits once drained"
    );
    assert!(svc.stderr().contains("on_shutdown: http is draining"));
}

#[test]
fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let scratch = Scratch::new("http-term");
    let port = free_port();
    let addr = loopback(port);
    let mut svc = Service::start(&example("http"), &scratch, &[("ADDR", &addr.to_string())]);
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let pid = svc.first_pid();
    let slow = request_accepted_by(pid, addr, "/slow?ms=1000");
    signal(pid, Signal::SIGTERM);
    let body = slow.answer().expect("the in-flight request completes");
    assert_eq!(parse_pid(&body), Some(pid));
    assert_eq!(svc.wait_first_exit(), Some(0));
    assert!(svc.stderr().contains("reason=Stopped"));
}

#[test]
fn a_second_sigterm_during_the_drain_exits_at_once() {
    let scratch = Scratch::new("http-term2");
    let port = free_port();
    let addr = loopback(port);
    let mut svc = Service::start(&example("http"), &scratch, &[("ADDR", &addr.to_string())]);
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let pid = svc.first_pid();
    let slow = request_accepted_by(pid, addr, "/slow?ms=60000");
    signal(pid, Signal::SIGTERM);
    wait_until("the drain begins", || {
        svc.stderr().contains("shutting down")
    });
    signal(pid, Signal::SIGTERM);
    assert_eq!(svc.wait_first_exit(), Some(128 + 15), "forced exit code");
    assert!(slow.answer().is_err(), "the 60 s request was cut short");
}

#[test]
fn drain_timeout_bounds_the_drain() {
    let scratch = Scratch::new("http-drain");
    let port = free_port();
    let addr = loopback(port);
    let mut svc = Service::start(
        &example("http"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "300ms"),
        ],
    );
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let pid = svc.first_pid();
    let slow = request_accepted_by(pid, addr, "/slow?ms=60000");
    signal(pid, Signal::SIGTERM);
    assert_eq!(svc.wait_first_exit(), Some(0));
    assert!(svc.stderr().contains("drain timeout"), "{}", svc.stderr());
    assert!(slow.answer().is_err());
}

#[test]
fn manual_ready_holds_the_parent_until_the_body_calls_ready() {
    let scratch = Scratch::new("http-manual");
    let port = free_port();
    let addr = loopback(port);
    let svc = Service::start(
        &example("http"),
        &scratch,
        &[("ADDR", &addr.to_string()), ("WARMUP_MS", "1500")],
    );
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let old = svc.first_pid();
    let warming = |log: &str| log.matches("warming up before ready").count();
    signal(old, Signal::SIGHUP);
    // The successor is warming up (has its listener, is not ready): the old one still serves.
    wait_until("the successor warms up", || warming(&svc.stderr()) == 2);
    assert_eq!(
        http_pid_of(addr).unwrap(),
        old,
        "the old process serves during the warm-up"
    );
    assert!(
        !is_gone(old),
        "the old process waits for the successor's ready"
    );
    let new = wait_new_http_pid(addr, old);
    svc.track(new);
    assert_eq!(wait_reaped(old, WAIT), Some(0));
}

#[test]
fn a_bad_address_in_the_environment_is_one_line_and_exit_1() {
    let scratch = Scratch::new("bad-env");
    for (exe, var, value) in [
        ("hello", "ADDR", "not-an-address"),
        ("udp", "ADDR", "127.0.0.1:99999"),
        ("unix", "SOCKET", ""),
        ("http", "ADDR", "[::1]"),
    ] {
        let mut svc = Service::start(&example(exe), &scratch, &[(var, value)]);
        assert_eq!(svc.wait_first_exit(), Some(1), "{exe} {var}={value:?}");
        let err = svc.stderr();
        assert_eq!(err.lines().count(), 1, "{exe}: exactly one line:\n{err}");
        assert!(
            err.contains(var) && err.contains("error"),
            "{exe}: names the variable: {err}"
        );
    }
}

#[test]
fn operator_overrides_work_and_a_malformed_one_is_one_line() {
    let scratch = Scratch::new("overrides");
    for exe in ["hello", "http", "udp", "unix"] {
        let pid_file = scratch.path(&format!("{exe}.pid"));
        let sock = scratch.path(&format!("{exe}.sock"));
        let port = free_port();
        let svc = Service::start(
            &example(exe),
            &scratch,
            &[
                ("ADDR", &loopback(port).to_string()),
                ("SOCKET", sock.to_str().unwrap()),
                ("TABLEFLIP_PID_FILE", pid_file.to_str().unwrap()),
                ("TABLEFLIP_UPGRADE_TIMEOUT", "5s"),
                ("TABLEFLIP_DRAIN_TIMEOUT", "2s"),
            ],
        );
        wait_until("the pid file", || {
            std::fs::read_to_string(&pid_file)
                .is_ok_and(|p| p.trim() == svc.first_pid().to_string())
        });
        drop(svc);

        for var in ["TABLEFLIP_UPGRADE_TIMEOUT", "TABLEFLIP_DRAIN_TIMEOUT"] {
            let mut svc = Service::start(
                &example(exe),
                &scratch,
                &[(var, "soon"), ("ADDR", "127.0.0.1:0")],
            );
            assert_eq!(svc.wait_first_exit(), Some(1), "{exe} {var}");
            let err = svc.stderr();
            assert_eq!(err.lines().count(), 1, "{exe}: {err}");
            assert!(err.contains(var), "{exe}: {err}");
        }
    }
}

#[test]
fn an_unwritable_pid_file_is_one_line_and_exit_1() {
    let scratch = Scratch::new("pidfile");
    let mut svc = Service::start(
        &example("hello"),
        &scratch,
        &[
            ("ADDR", "127.0.0.1:0"),
            ("TABLEFLIP_PID_FILE", "/nonexistent-dir/x.pid"),
        ],
    );
    assert_eq!(svc.wait_first_exit(), Some(1));
    let err = svc.stderr();
    assert!(
        err.lines().count() == 1 && err.contains("pid file"),
        "{err}"
    );
}
