//! systemd integration against real protocol peers: a unix datagram socket bound here plays
//! systemd's notify socket (it records who sent what, and answers `BARRIER=1` by closing the
//! passed descriptor), and `systemd-socket-activate` hands the examples their sockets.

mod support;

use std::io::IoSliceMut;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use support::*;

/// One notification, as systemd would see it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    /// The sender, from `SCM_CREDENTIALS`.
    pid: i32,
    /// The datagram.
    text: String,
    /// How many descriptors came with it (`SCM_RIGHTS`).
    fds: usize,
}

/// A fake systemd notify socket: records every message; answers `BARRIER=1` by closing the
/// passed descriptors, unless told to hold them.
struct Notify {
    path: PathBuf,
    log: Arc<Mutex<Vec<Msg>>>,
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<RawFd>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Notify {
    fn bind(scratch: &Scratch) -> Notify {
        let path = scratch.path("notify");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        setsockopt(&sock, sockopt::PassCred, &true).expect("SO_PASSCRED");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, hold, held, stop) = (log.clone(), hold.clone(), held.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(msg) = receive(&sock, &hold, &held) else {
                        continue;
                    };
                    // Progress reports (status lines, watchdog pings, timeout extensions)
                    // come at times that depend on timing: tests/notify.rs checks them.
                    if is_progress(&msg.text) {
                        continue;
                    }
                    log.lock().unwrap().push(msg);
                }
            })
        };
        Notify {
            path,
            log,
            hold,
            held,
            stop,
            thread: Some(thread),
        }
    }

    fn env(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    fn messages(&self) -> Vec<Msg> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` messages arrived; returns them all.
    fn wait_for(&self, n: usize) -> Vec<Msg> {
        let deadline = Instant::now() + WAIT;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} notifications, got {msgs:#?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the descriptors of barriers held so far, and answers the next ones at once.
    fn release_barriers(&self) {
        self.hold.store(false, Ordering::Relaxed);
        for fd in self.held.lock().unwrap().drain(..) {
            let _ = nix::unistd::close(fd);
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.release_barriers();
    }
}

/// Receives one datagram with its credentials and descriptors (close-on-exec, so that no
/// other test's child inherits them).
fn receive(sock: &UnixDatagram, hold: &AtomicBool, held: &Mutex<Vec<RawFd>>) -> Option<Msg> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [RawFd; 8]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut pid = 0;
    let mut fds = Vec::new();
    for c in msg.cmsgs().expect("control messages") {
        match c {
            ControlMessageOwned::ScmCredentials(creds) => pid = creds.pid(),
            ControlMessageOwned::ScmRights(passed) => fds.extend(passed),
            _ => {}
        }
    }
    let len = msg.bytes;
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    let n = fds.len();
    if text == "BARRIER=1" && hold.load(Ordering::Relaxed) {
        held.lock().unwrap().extend(fds);
    } else {
        for fd in fds {
            let _ = nix::unistd::close(fd);
        }
    }
    Some(Msg { pid, text, fds: n })
}

fn msg(pid: i32, text: &str, fds: usize) -> Msg {
    Msg {
        pid,
        text: text.to_owned(),
        fds,
    }
}

/// Checks a `RELOADING=1` message and returns its `MONOTONIC_USEC=` value, which must be a
/// plausible `CLOCK_MONOTONIC` reading (not after the boot-time clock, which never lags it).
fn reloading_usec(m: &Msg, from: i32) -> u64 {
    assert_eq!(m.pid, from, "RELOADING=1 from the serving process: {m:?}");
    assert_eq!(m.fds, 0);
    let usec = m
        .text
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("expected RELOADING=1 and MONOTONIC_USEC=, got {m:?}"));
    let usec: u64 = usec.parse().expect("MONOTONIC_USEC is a number");
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
    let uptime: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        usec > 0 && usec as f64 <= (uptime + 1.0) * 1e6,
        "{usec} vs {uptime}s"
    );
    usec
}

/// The three messages of a successful upgrade from `old` to `new`, starting at `msgs[at]`.
fn assert_handover(msgs: &[Msg], at: usize, old: i32, new: i32) -> u64 {
    let usec = reloading_usec(&msgs[at], old);
    assert_eq!(
        msgs[at + 1..at + 3],
        [
            msg(
                old,
                &format!("MAINPID={new}\nREADY=1\nSTATUS=serving (pid {new})"),
                0
            ),
            msg(old, "BARRIER=1", 1)
        ],
        "after RELOADING=1: {msgs:#?}"
    );
    usec
}

/// Starts the runtime-only example with a fake notify socket.
fn start_raw(exe: &Path, scratch: &Scratch, notify: &Notify, addr: SocketAddr) -> Service {
    Service::start(
        exe,
        scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("NOTIFY_SOCKET", &notify.env()),
        ],
    )
}

#[test]
fn cold_start_upgrade_and_stop_notify_systemd_in_order() {
    let scratch = Scratch::new("sd-notify");
    let notify = Notify::bind(&scratch);
    let addr = loopback(free_port());
    let svc = start_raw(&example("raw"), &scratch, &notify, addr);
    let first = svc.first_pid();
    wait_until("first answer", || hello(addr).is_ok());
    assert_eq!(notify.wait_for(1), [msg(first, "READY=1", 0)]);

    signal(first, Signal::SIGHUP);
    let second = wait_new_pid(addr, first);
    svc.track(second);
    let msgs = notify.wait_for(4);
    assert_handover(&msgs, 1, first, second);
    assert!(wait_reaped(first, WAIT).is_some() || is_gone(first));
    // The successor does not announce itself: its parent did.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(notify.messages().len(), 4, "{:#?}", notify.messages());

    signal(second, Signal::SIGTERM);
    assert_eq!(wait_reaped(second, WAIT), Some(0), "{}", svc.stderr());
    let msgs = notify.wait_for(5);
    assert_eq!(msgs[4..], [msg(second, "STOPPING=1", 0)], "{msgs:#?}");
    assert_eq!(msgs.len(), 5, "{msgs:#?}");
}

#[test]
fn the_old_process_drains_only_after_systemd_answered_the_barrier() {
    let scratch = Scratch::new("sd-barrier");
    let notify = Notify::bind(&scratch);
    notify.hold.store(true, Ordering::Relaxed);
    let addr = loopback(free_port());
    let svc = start_raw(&example("raw"), &scratch, &notify, addr);
    let first = svc.first_pid();
    wait_until("first answer", || hello(addr).is_ok());
    notify.wait_for(1);

    signal(first, Signal::SIGHUP);
    let msgs = notify.wait_for(4);
    assert_eq!(msgs[3].text, "BARRIER=1");
    let second = msgs[2]
        .text
        .strip_prefix("MAINPID=")
        .and_then(|m| m.split('\n').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("MAINPID= in {msgs:#?}"));
    svc.track(second);
    // systemd has not answered: the old process keeps serving and does not drain.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !is_gone(first) && !is_zombie(first),
        "the old process exited before the barrier was answered: {}",
        svc.stderr()
    );
    assert!(!svc.stderr().contains("draining"), "{}", svc.stderr());
    // A reload now is refused (the parent still lives), and says so, so that systemd does
    // not wait for a READY=1 that would never come.
    signal(second, Signal::SIGHUP);
    let msgs = notify.wait_for(6);
    reloading_usec(&msgs[4], second);
    assert_eq!(
        msgs[5],
        msg(
            second,
            "READY=1\nSTATUS=upgrade failed: parent process hasn't exited yet",
            0
        ),
        "{msgs:#?}"
    );
    notify.release_barriers();
    assert_eq!(wait_reaped(first, WAIT), Some(0), "{}", svc.stderr());
    assert_eq!(hello(addr).unwrap(), second);
}

#[test]
fn a_crashing_successor_sends_ready_with_the_cause_and_the_old_one_serves_on() {
    let scratch = Scratch::new("sd-failed");
    let notify = Notify::bind(&scratch);
    // A symlink, not a copy: a copy's write descriptor, leaked into a child another test
    // forks at that moment, would make the exec fail with ETXTBSY.
    let exe = scratch.path("raw");
    std::os::unix::fs::symlink(example("raw"), &exe).unwrap();
    let addr = loopback(free_port());
    let svc = start_raw(&exe, &scratch, &notify, addr);
    let first = svc.first_pid();
    wait_until("first answer", || hello(addr).is_ok());
    notify.wait_for(1);

    // Swap the binary for one that crashes in initialisation.
    let tmp = scratch.path("raw.new");
    std::fs::write(&tmp, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &exe).unwrap();

    signal(first, Signal::SIGHUP);
    let msgs = notify.wait_for(3);
    reloading_usec(&msgs[1], first);
    let failed = &msgs[2];
    assert_eq!((failed.pid, failed.fds), (first, 0), "{msgs:#?}");
    let status = failed
        .text
        .strip_prefix("READY=1\nSTATUS=upgrade failed: ")
        .unwrap_or_else(|| panic!("READY=1 and STATUS= expected: {msgs:#?}"));
    assert!(
        status.contains("exited before it was ready") && status.contains("exit status: 1"),
        "{status:?}"
    );
    assert_eq!(hello(addr).unwrap(), first, "the old process serves on");

    signal(first, Signal::SIGTERM);
    assert_eq!(wait_reaped(first, WAIT), Some(0), "{}", svc.stderr());
    let msgs = notify.wait_for(4);
    assert_eq!(msgs[3..], [msg(first, "STOPPING=1", 0)], "{msgs:#?}");
}

/// The listening TCP socket's inode for a loopback port, and how many there are.
fn tcp_listeners(port: u16) -> Vec<String> {
    let hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let c: Vec<&str> = l.split_whitespace().collect();
                    (c.len() > 9 && c[1].ends_with(&hex) && c[3] == "0A").then(|| c[9].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn holds(pid: i32, inode: &str) -> bool {
    fds_of(pid)
        .iter()
        .any(|f| f.ends_with(&format!("->socket:[{inode}]")))
}

/// `systemd-socket-activate` with the given sockets and environment, running `program`.
fn activate(
    scratch: &Scratch,
    sockets: &[&str],
    names: &str,
    envs: &[(&str, &str)],
    program: &[&str],
) -> Service {
    assert!(
        Command::new("systemd-socket-activate")
            .arg("--help")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok(),
        "systemd-socket-activate is missing: `apt-get install systemd` (Debian), as .ci/run does"
    );
    let mut cmd = Command::new("systemd-socket-activate");
    for s in sockets {
        cmd.arg(s);
    }
    cmd.arg(format!("--fdname={names}"));
    for (k, v) in envs {
        cmd.arg(format!("-E{k}={v}"));
    }
    // Only what -E passes reaches the program; systemd-socket-activate itself must not
    // notify anybody.
    cmd.args(program)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES");
    Service::spawn(cmd, scratch)
}

/// Under socket activation, three SIGHUP upgrades under a client loop: no failure, systemd
/// told RELOADING / MAINPID / READY each time, and the very same socket throughout.
fn activated_upgrades(name: &str) {
    let scratch = Scratch::new(&format!("sd-activate-{name}"));
    let notify = Notify::bind(&scratch);
    let port = free_port();
    let addr = loopback(port);
    // A different address on purpose: the socket is claimed by its name, never bound.
    let unused = free_port();
    let exe = example(name);
    let svc = activate(
        &scratch,
        &["-l", &addr.to_string()],
        "http",
        &[
            ("NOTIFY_SOCKET", &notify.env()),
            ("ADDR", &loopback(unused).to_string()),
        ],
        &[exe.to_str().unwrap()],
    );
    // systemd-socket-activate starts the program at the first connection, in its own pid.
    wait_until("first answer", || hello(addr).is_ok());
    let first = svc.first_pid();
    assert_eq!(notify.wait_for(1), [msg(first, "READY=1", 0)]);
    let inode = tcp_listeners(port);
    assert_eq!(inode.len(), 1, "one listening socket on {addr}");
    let inode = inode[0].clone();
    assert!(holds(first, &inode), "{:?}", fds_of(first));

    let load = Load::start(addr, 4, 1_000_000, Duration::from_secs(120));
    let mut pid = first;
    let mut last_usec = 0;
    for round in 0..3 {
        let seen = notify.messages().len();
        signal(pid, Signal::SIGHUP);
        let next = wait_new_pid(addr, pid);
        svc.track(next);
        let msgs = notify.wait_for(seen + 3);
        let usec = assert_handover(&msgs, seen, pid, next);
        assert!(
            usec >= last_usec,
            "MONOTONIC_USEC went back in round {round}"
        );
        last_usec = usec;
        assert!(
            wait_reaped(pid, WAIT).is_some() || is_gone(pid),
            "old pid {pid} still there"
        );
        assert_eq!(
            tcp_listeners(port),
            std::slice::from_ref(&inode),
            "round {round}"
        );
        assert!(holds(next, &inode), "round {round}: {:?}", fds_of(next));
        pid = next;
    }
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed connections: {:?}", report.errors);
    assert!(report.ok > 0);
    assert_eq!(notify.messages().len(), 10, "{:#?}", notify.messages());
    assert!(
        TcpStream::connect(loopback(unused)).is_err(),
        "$ADDR was bound although systemd passed the socket"
    );

    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "{}", svc.stderr());
    assert_eq!(
        notify.wait_for(11)[10..],
        [msg(pid, "STOPPING=1", 0)],
        "{:#?}",
        notify.messages()
    );
}

#[test]
fn activated_socket_survives_three_upgrades_of_the_macro_example() {
    activated_upgrades("hello");
}

#[test]
fn activated_socket_survives_three_upgrades_on_the_runtime_api() {
    activated_upgrades("raw");
}

#[test]
fn activated_socket_is_claimed_by_address_and_unclaimed_ones_are_closed() {
    let scratch = Scratch::new("sd-by-addr");
    let port = free_port();
    let extra = free_port();
    let addr = loopback(port);
    let exe = example("hello");
    let svc = activate(
        &scratch,
        &["-l", &addr.to_string(), "-l", &loopback(extra).to_string()],
        "other:extra",
        &[("ADDR", &addr.to_string())],
        &[exe.to_str().unwrap()],
    );
    wait_until("systemd-socket-activate listening", || {
        tcp_listeners(extra).len() == 1
    });
    let extra_inode = tcp_listeners(extra).remove(0);
    wait_until("first answer", || hello(addr).is_ok());
    let pid = svc.first_pid();
    assert!(!holds(pid, &extra_inode), "unclaimed socket kept open");
    assert!(
        tcp_listeners(extra).is_empty(),
        "nobody listens on {extra} any more"
    );
    let stderr = svc.stderr();
    assert!(
        stderr.contains("no listener claimed") && stderr.contains("extra"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("other ("),
        "claimed socket reported unclaimed: {stderr}"
    );
    let [inode] = &tcp_listeners(port)[..] else {
        panic!("one listener on {port}");
    };
    assert!(holds(pid, inode));
    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "{}", svc.stderr());
}

#[test]
fn an_activated_socket_of_the_wrong_type_is_one_clear_error() {
    let scratch = Scratch::new("sd-wrong-type");
    let port = free_port();
    let exe = example("hello");
    let mut svc = activate(
        &scratch,
        &["--datagram", "-l", &loopback(port).to_string()],
        "http",
        &[("ADDR", &loopback(free_port()).to_string())],
        &[exe.to_str().unwrap()],
    );
    // A datagram wakes systemd-socket-activate up.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + WAIT;
    let code = loop {
        let _ = udp.send_to(b"wake up", loopback(port));
        std::thread::sleep(Duration::from_millis(50));
        if let Some(status) = is_exited(&mut svc) {
            break status;
        }
        assert!(Instant::now() < deadline, "hello did not exit");
    };
    assert_ne!(code, Some(0));
    let stderr = svc.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("systemd-activated socket \"http\"")
            && errors[0].contains("SOCK_DGRAM")
            && errors[0].contains("listener `listener`"),
        "{stderr}"
    );
}

/// The first process's exit code, if it exited.
fn is_exited(svc: &mut Service) -> Option<Option<i32>> {
    let pid = svc.first_pid();
    if is_gone(pid) || is_zombie(pid) {
        Some(svc.wait_first_exit())
    } else {
        None
    }
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let scratch = Scratch::new("sd-other-pid");
    let port = free_port();
    let addr = loopback(free_port());
    let exe = example("hello");
    // The program systemd-socket-activate starts sets LISTEN_PID to another process's pid
    // before it executes hello, which inherits fd 3 and LISTEN_FDS=1.
    let svc = activate(
        &scratch,
        &["-l", &loopback(port).to_string()],
        "http",
        &[("ADDR", &addr.to_string())],
        &[
            "/bin/sh",
            "-c",
            "LISTEN_PID=1 exec \"$0\"",
            exe.to_str().unwrap(),
        ],
    );
    // Wake systemd-socket-activate up; nobody will accept this one.
    wait_until("systemd-socket-activate listening", || {
        tcp_listeners(port).len() == 1
    });
    let _wake = TcpStream::connect(loopback(port)).unwrap();
    wait_until("an answer on $ADDR", || hello(addr).is_ok());
    let pid = svc.first_pid();
    let [inode] = &tcp_listeners(port)[..] else {
        panic!("systemd-socket-activate listens on {port}");
    };
    // fd 3 is left alone: still systemd-socket-activate's socket, neither claimed nor closed.
    let fd3 = std::fs::read_link(format!("/proc/{pid}/fd/3")).expect("fd 3 is open");
    assert_eq!(fd3.to_string_lossy(), format!("socket:[{inode}]"));
    let stderr = svc.stderr();
    assert!(
        !stderr.contains("systemd passed sockets") && !stderr.contains("no listener claimed"),
        "{stderr}"
    );
    // Not handed over either.
    signal(pid, Signal::SIGHUP);
    let next = wait_new_pid(addr, pid);
    svc.track(next);
    assert!(!holds(next, inode), "{:?}", fds_of(next));
    signal(next, Signal::SIGTERM);
    assert!(wait_reaped(pid, WAIT).is_some() || is_gone(pid));
    assert_eq!(wait_reaped(next, WAIT), Some(0), "{}", svc.stderr());
}
