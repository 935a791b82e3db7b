//! Bad input: the examples started by a played (Go-compatible) parent that hands them
//! malformed names, missing or wrong descriptors, or a broken environment; and real
//! upgrades whose successor meets an unusable address or pid file. Each case must give one
//! clear error line, a non-zero exit (or a refused upgrade), no panic, and leave the running
//! service, here the test's own sockets or the old process, untouched.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::Signal;
use support::*;

/// A child of the played parent: killed and reaped on drop.
struct Played {
    child: Child,
    stderr_path: PathBuf,
}

impl Played {
    /// Starts `exe` as a tableflip child: the sentinel set and exactly the descriptors in
    /// `fds` (child number, descriptor) beside stdin, stdout and stderr.
    fn start(exe: &Path, dir: &Path, envs: &[(&str, &str)], fds: Fds) -> Played {
        cloexec_leaked_fds();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr_path = dir.join(format!("played-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(exe);
        cmd.env(tableflip::__private::SENTINEL, "yes")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mappings = fds
            .into_iter()
            .map(|(child_fd, parent_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        cmd.fd_mappings(mappings).expect("fd mappings");
        let child = cmd.spawn().expect("spawn the child");
        // Our copies of the mapped descriptors close with the command.
        drop(cmd);
        Played { child, stderr_path }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded) for the exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the child did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts the outcome of bad input: exit 1 and one clear line, no panic.
    fn assert_refused(&mut self, case: &str, needle: &str) {
        let code = self.exit_code();
        let err = self.stderr();
        assert_eq!(code, Some(1), "{case}: exit code; stderr:\n{err}");
        assert_eq!(err.lines().count(), 1, "{case}: exactly one line:\n{err}");
        assert!(
            err.contains("error:") && err.contains(needle),
            "{case}: {needle:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Descriptors for a child: (number in the child, descriptor).
type Fds = Vec<(i32, OwnedFd)>;

/// A pipe, both ends close-on-exec (other tests spawn processes meanwhile).
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

/// The handshake pipes: (our ready read end, child's fd 3), (child's fd 4, our names end).
struct Pipes {
    ready: std::fs::File,
    names: Option<std::fs::File>,
}

/// fds 3 and 4 as a parent sets them up, plus `files` at 5+i, and `names` written on fd 4.
/// Dropping `Pipes::names` closes fd 4's other end: the parent is gone.
fn handoff(names: &[u8], files: Vec<OwnedFd>) -> (Pipes, Fds) {
    let (ready_r, ready_w) = pipe();
    let (names_r, names_w) = pipe();
    let mut fds = vec![(3, ready_w), (4, names_r)];
    fds.extend(
        files
            .into_iter()
            .enumerate()
            .map(|(i, fd)| (5 + i as i32, fd)),
    );
    let names_file = std::fs::File::from(names_w);
    // Written from a thread: a child that stops reading must not block the test.
    let bytes = names.to_vec();
    let writer = names_file.try_clone().expect("dup the names pipe");
    std::thread::spawn(move || {
        let mut writer = writer;
        let _ = writer.write_all(&bytes);
    });
    (
        Pipes {
            ready: std::fs::File::from(ready_r),
            names: Some(names_file),
        },
        fds,
    )
}

/// The first byte on the ready pipe, waiting at most [`WAIT`]; `None` at end of file.
fn ready_byte(ready: &mut std::fs::File) -> Option<u8> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(WAIT.as_millis()).unwrap_or(u16::MAX);
    let n = poll(&mut fds, PollTimeout::from(ms)).expect("poll the ready pipe");
    assert!(n > 0, "nothing on the ready pipe within {WAIT:?}");
    let mut byte = [0u8; 1];
    match ready.read(&mut byte).expect("read the ready pipe") {
        0 => None,
        _ => Some(byte[0]),
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Go's gob encoding of a `[][]string`, as a Go tableflip parent writes it.
fn gob_names(entries: &[&[&str]]) -> Vec<u8> {
    fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 128 {
            out.push(v as u8);
        } else {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push((-((8 - skip) as i8)) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    let mut out = hex("0dff83020102ff840001ff820000 0cff81020102ff8200010c0000");
    let mut body = hex("ff8400");
    uint(&mut body, entries.len() as u64);
    for entry in entries {
        uint(&mut body, entry.len() as u64);
        for s in *entry {
            uint(&mut body, s.len() as u64);
            body.extend_from_slice(s.as_bytes());
        }
    }
    uint(&mut out, body.len() as u64);
    out.extend(body);
    out
}

/// A TCP listener of the test's own, standing for the running service.
struct OurTcp {
    listener: TcpListener,
    addr: SocketAddr,
}

impl OurTcp {
    fn new() -> OurTcp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        OurTcp { listener, addr }
    }

    fn fd(&self) -> OwnedFd {
        self.listener.try_clone().unwrap().into()
    }

    /// Still listening, still ours: a client connects and we accept it.
    fn assert_untouched(&self, case: &str) {
        let mut client = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{case}: our listener refuses: {e}"));
        self.listener.set_nonblocking(true).unwrap();
        let mut accepted = None;
        wait_until(&format!("{case}: our listener accepts"), || {
            accepted = self.listener.accept().ok();
            accepted.is_some()
        });
        let (mut served, _) = accepted.unwrap();
        served.set_nonblocking(false).unwrap();
        served.write_all(b"still here").unwrap();
        drop(served);
        client.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(read_all(&mut client), "still here", "{case}");
    }
}

#[test]
fn garbage_truncated_and_oversized_names_are_one_error_line_and_exit_1() {
    let scratch = Scratch::new("bad-names");
    let ours = OurTcp::new();
    let addr = ours.addr.to_string();
    let good = gob_names(&[&["listener", "tcp", &addr]]);
    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("empty".into(), Vec::new(), "can't decode the names"),
        (
            "garbage".into(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "names",
        ),
        (
            "garbage after the type definitions".into(),
            hex("0dff83020102ff8400deadbeef"),
            "names",
        ),
        (
            "a length prefix of 2^60".into(),
            hex("f8 1000000000000000 ff"),
            "names",
        ),
        (
            "a message just over 16 MiB".into(),
            [hex("fc 01000001"), vec![0u8; 4096]].concat(),
            "names",
        ),
        (
            "a count larger than the message".into(),
            [
                hex("0dff83020102ff840001ff820000 0cff81020102ff8200010c0000"),
                hex("05 ff84 00 7f 03"),
            ]
            .concat(),
            "names",
        ),
        (
            "a []string instead of a [][]string".into(),
            hex("0cff81020102ff8200010c0000 07ff82000103616263"),
            "names",
        ),
        (
            "an entry of two strings".into(),
            gob_names(&[&["listener", "tcp"]]),
            "expected 3 strings",
        ),
        (
            "an unknown kind".into(),
            gob_names(&[&["socket", "tcp", &addr]]),
            "unknown kind",
        ),
        (
            "invalid UTF-8".into(),
            [&good[..good.len() - 1], b"\xff"].concat(),
            "names",
        ),
    ];
    for cut in [1, 13, 25, good.len() / 2, good.len() - 1] {
        cases.push((format!("cut at {cut}"), good[..cut].to_vec(), "names"));
    }
    for (case, bytes, needle) in cases {
        let (pipes, fds) = handoff(&bytes, vec![ours.fd()]);
        let mut child = Played::start(&example("hello"), &scratch.0, &[("ADDR", &addr)], fds);
        // Whatever was written, the parent then goes away (end of file on fd 4).
        drop(pipes.names);
        child.assert_refused(&case, needle);
        let mut ready = pipes.ready;
        assert_eq!(
            ready_byte(&mut ready),
            None,
            "{case}: not ready, so no ready byte"
        );
        ours.assert_untouched(&case);
    }
}

#[test]
fn a_sentinel_with_fd_3_or_4_missing_or_of_the_wrong_kind_is_one_error_line_and_exit_1() {
    let scratch = Scratch::new("bad-sentinel");
    let file =
        |name: &str| -> OwnedFd { std::fs::File::create(scratch.path(name)).unwrap().into() };
    let (_keep_r, w) = pipe();
    let (r, _keep_w) = pipe();
    let (r2, _keep_w2) = pipe();
    let (_keep_r3, w3) = pipe();
    let (sock, _peer) = UnixStream::pair().unwrap();
    let cases: Vec<(&str, Fds, &str)> = vec![
        ("no fds at all", vec![], "fd 3 (ready pipe) is not open"),
        (
            "fd 4 missing",
            vec![(3, w.try_clone().unwrap())],
            "fd 4 (names pipe) is not open",
        ),
        (
            "fd 3 missing",
            vec![(4, r.try_clone().unwrap())],
            "fd 3 (ready pipe) is not open",
        ),
        (
            "a regular file on fd 4",
            vec![(3, w.try_clone().unwrap()), (4, file("names"))],
            "fd 4 (names pipe) is not a pipe",
        ),
        (
            "a regular file on fd 3",
            vec![(3, file("ready")), (4, r.try_clone().unwrap())],
            "fd 3 (ready pipe) is not a pipe",
        ),
        (
            "a read end on fd 3",
            vec![(3, r2), (4, r.try_clone().unwrap())],
            "fd 3 (ready pipe) is not open for writing",
        ),
        (
            "a write end on fd 4",
            vec![(3, w.try_clone().unwrap()), (4, w3)],
            "fd 4 (names pipe) is not open for reading",
        ),
        (
            "a socket on fd 3",
            vec![(3, sock.into()), (4, r.try_clone().unwrap())],
            "fd 3 (ready pipe) is not a pipe",
        ),
    ];
    for (case, fds, needle) in cases {
        let mut child = Played::start(
            &example("hello"),
            &scratch.0,
            &[("ADDR", "127.0.0.1:0")],
            fds,
        );
        child.assert_refused(case, needle);
    }
}

#[test]
fn fewer_fds_than_names_is_one_error_line_and_exit_1() {
    let scratch = Scratch::new("bad-fewer");
    let ours = OurTcp::new();
    let addr = ours.addr.to_string();
    let names = gob_names(&[
        &["listener", "tcp", &addr],
        &["packet", "udp", "127.0.0.1:53"],
    ]);
    let (pipes, fds) = handoff(&names, vec![ours.fd()]);
    let mut child = Played::start(&example("hello"), &scratch.0, &[("ADDR", &addr)], fds);
    child.assert_refused("fewer fds", "but fd 6 is not open");
    drop(pipes);
    ours.assert_untouched("fewer fds");
}

#[test]
fn more_fds_than_names_are_closed_with_one_warning_and_the_child_serves() {
    // docs/protocol.md: descriptors beyond the named ones leaked from the parent; the child
    // closes them (so a leaked socket cannot outlive its generation) and says so.
    let scratch = Scratch::new("bad-more");
    let ours = OurTcp::new();
    let addr = ours.addr.to_string();
    let extra = UdpSocket::bind("127.0.0.1:0").unwrap();
    let extra_inode = {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", extra.as_raw_fd()))
            .unwrap()
            .ino()
    };
    let names = gob_names(&[&["listener", "tcp", &addr]]);
    let (mut pipes, fds) = handoff(&names, vec![ours.fd(), extra.try_clone().unwrap().into()]);
    let child = Played::start(&example("hello"), &scratch.0, &[("ADDR", &addr)], fds);
    assert_eq!(
        ready_byte(&mut pipes.ready),
        Some(42),
        "the ready byte; stderr:\n{}",
        child.stderr()
    );
    // The log is written by a thread of its own: the line may follow the ready byte.
    wait_until("the warning in the log", || {
        child.stderr().contains("did not name")
    });
    let err = child.stderr();
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("did not name")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("fds [6]"), "{warnings:?}");
    assert!(
        !fds_of(child.pid())
            .iter()
            .any(|f| f.ends_with(&format!("socket:[{extra_inode}]"))),
        "the extra socket was closed in the child"
    );
    // The child serves on the listener it was named.
    drop(pipes.names.take());
    assert_eq!(hello(ours.addr).unwrap(), child.pid());
    assert!(!err.contains("panicked"));
}

#[test]
fn a_socket_of_the_wrong_type_for_a_declared_listener_is_one_error_line_and_exit_1() {
    let scratch = Scratch::new("bad-type");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");

    // hello declares a tcp listener on $ADDR; the parent names other sockets so.
    let udp = UdpSocket::bind(&addr).unwrap();
    // A TCP socket bound, never listening.
    let tcp_port = free_port();
    let tcp_addr = format!("127.0.0.1:{tcp_port}");
    let bound_only = {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let at: std::net::SocketAddrV4 = tcp_addr.parse().unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::from(at)).unwrap();
        fd
    };
    let unix = UnixListener::bind(scratch.path("app.sock")).unwrap();
    let file: OwnedFd = std::fs::File::create(scratch.path("plain")).unwrap().into();
    let cases: Vec<(&str, &str, &str, OwnedFd, &str)> = vec![
        (
            "a UDP socket named a tcp listener",
            "hello",
            &addr,
            udp.try_clone().unwrap().into(),
            "AF_INET SOCK_DGRAM",
        ),
        (
            "a TCP socket that is not listening",
            "hello",
            &tcp_addr,
            bound_only.try_clone().unwrap(),
            "not listening",
        ),
        (
            "a unix listener named a tcp listener",
            "hello",
            &addr,
            unix.try_clone().unwrap().into(),
            "AF_UNIX",
        ),
        (
            "a regular file named a tcp listener",
            "hello",
            &addr,
            file,
            "not a socket",
        ),
    ];
    for (case, exe, at, fd, needle) in cases {
        let names = gob_names(&[&["listener", "tcp", at]]);
        let (pipes, fds) = handoff(&names, vec![fd]);
        let mut child = Played::start(&example(exe), &scratch.0, &[("ADDR", at)], fds);
        child.assert_refused(case, needle);
        drop(pipes);
    }

    // udp declares a udp packet socket on $ADDR; the parent names a TCP listener so.
    let ours = OurTcp::new();
    let at = ours.addr.to_string();
    let names = gob_names(&[&["packet", "udp", &at]]);
    let (pipes, fds) = handoff(&names, vec![ours.fd()]);
    let mut child = Played::start(&example("udp"), &scratch.0, &[("ADDR", &at)], fds);
    child.assert_refused("a TCP listener named a udp socket", "SOCK_STREAM");
    drop(pipes);

    // The sockets the "parent" holds are untouched: still bound, listening, usable.
    ours.assert_untouched("tcp named udp");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"ping", &addr).unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        udp.recv(&mut buf).unwrap(),
        4,
        "our udp socket still receives"
    );
    assert!(
        scratch.path("app.sock").exists(),
        "the unix socket file is still there"
    );
    UnixStream::connect(scratch.path("app.sock")).expect("our unix listener still listens");
}

#[test]
fn an_unparsable_address_in_the_environment_is_one_error_line_and_the_inherited_socket_stays() {
    let scratch = Scratch::new("bad-env-addr");
    let ours = OurTcp::new();
    let addr = ours.addr.to_string();
    for bad in [
        "not-an-address",
        "127.0.0.1:99999",
        "[::1",
        "127.0.0.1:80:80",
        "",
    ] {
        let names = gob_names(&[&["listener", "tcp", &addr]]);
        let (pipes, fds) = handoff(&names, vec![ours.fd()]);
        let mut child = Played::start(&example("hello"), &scratch.0, &[("ADDR", bad)], fds);
        child.assert_refused(&format!("ADDR={bad:?}"), "ADDR=");
        drop(pipes);
        ours.assert_untouched(bad);
    }
}

#[test]
fn an_unwritable_pid_file_path_is_one_error_line_and_exit_1() {
    let scratch = Scratch::new("bad-pidfile");
    std::fs::create_dir(scratch.path("a-directory")).unwrap();
    std::fs::write(scratch.path("a-file"), "x").unwrap();
    for (case, path) in [
        ("missing directory", scratch.path("missing/app.pid")),
        ("the path is a directory", scratch.path("a-directory")),
        ("a file as the directory", scratch.path("a-file/app.pid")),
    ] {
        let mut svc = Service::start(
            &example("hello"),
            &scratch,
            &[
                ("ADDR", "127.0.0.1:0"),
                ("TABLEFLIP_PID_FILE", path.to_str().unwrap()),
            ],
        );
        assert_eq!(svc.wait_first_exit(), Some(1), "{case}");
        let err = svc.stderr();
        assert_eq!(err.lines().count(), 1, "{case}: {err}");
        assert!(err.contains("can't write pid file"), "{case}: {err}");
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
    let leftovers: Vec<String> = std::fs::read_dir(&scratch.0)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary pid files left: {leftovers:?}"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.path("a-file")).unwrap(),
        "x",
        "nothing written through"
    );
}

/// A service at `<scratch>/app` with a pid file in `<scratch>/run/`.
fn pid_file_service(example_name: &str, scratch: &Scratch, envs: &[(&str, &str)]) -> Service {
    std::fs::create_dir(scratch.path("run")).unwrap();
    install_file(&example(example_name), &scratch.path("app"));
    let pid_file = scratch.path("run/app.pid");
    let mut all = vec![("TABLEFLIP_PID_FILE", pid_file.to_str().unwrap())];
    all.extend_from_slice(envs);
    Service::start(&scratch.path("app"), scratch, &all)
}

#[test]
fn a_successor_that_cannot_write_the_pid_file_is_refused_and_the_old_one_serves() {
    let scratch = Scratch::new("bad-pidfile-upgrade");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tag = unique_tag("pidfile");
    let _strays = KillTagged(tag.clone());
    let mut svc = pid_file_service(
        "hello",
        &scratch,
        &[("ADDR", &addr.to_string()), (TAG_VAR, &tag)],
    );
    wait_until("hello answers", || hello(addr).is_ok());
    let old = svc.first_pid();
    let pid_file = scratch.path("run/app.pid");
    wait_until("the pid file", || pid_file.exists());

    // The pid file's directory turns into a file.
    std::fs::remove_dir_all(scratch.path("run")).unwrap();
    std::fs::write(scratch.path("run"), "not a directory").unwrap();
    let load = Load::start(addr, 2, 1_000_000, Duration::from_secs(60));
    signal(old, Signal::SIGHUP);
    wait_until("the refused upgrade", || {
        svc.log_count("upgrade failed; still serving") == 1
    });
    let log = svc.stderr();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("app: error:")).collect();
    assert_eq!(errors.len(), 1, "one line from the successor:\n{log}");
    assert!(errors[0].contains("can't write pid file"), "{errors:?}");
    assert!(log.contains("exit status: 1"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(hello(addr).unwrap(), old, "the old pid serves");
    assert_eq!(tagged_pids(&tag), [old].into());

    // Fixed: the next upgrade succeeds and the pid file names the new process.
    std::fs::remove_file(scratch.path("run")).unwrap();
    std::fs::create_dir(scratch.path("run")).unwrap();
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(addr, old);
    svc.track(new);
    assert_eq!(svc.wait_first_exit(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.to_string()
    );
    let report = load.finish();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.pids.is_subset(&[old, new].into()));
}

#[test]
fn a_refused_successor_leaves_the_old_unix_socket_file_in_place() {
    // The successor moved to another socket path (so the inherited one is unclaimed) and
    // cannot write its pid file: the upgrade is refused, and the old process must still be
    // reachable at its path.
    let scratch = Scratch::new("bad-unix-upgrade");
    let sock = scratch.path("old.sock");
    let mut svc = pid_file_service("unix", &scratch, &[("SOCKET", sock.to_str().unwrap())]);
    let ask = |path: &Path| -> std::io::Result<i32> {
        let mut s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(WAIT))?;
        let line = read_all(&mut s);
        parse_pid(&line).ok_or_else(|| std::io::Error::other(line))
    };
    wait_until("unix answers", || ask(&sock).is_ok());
    let old = svc.first_pid();

    swap_script(
        &scratch.path("app"),
        &format!(
            "#!/bin/sh\nSOCKET='{}' TABLEFLIP_PID_FILE='{}' exec '{}'\n",
            scratch.path("new.sock").display(),
            scratch.path("missing/app.pid").display(),
            example("unix").display()
        ),
    );
    signal(old, Signal::SIGHUP);
    wait_until("the refused upgrade", || {
        svc.log_count("upgrade failed; still serving") == 1
    });
    assert!(
        sock.exists(),
        "the old socket file is still there:\n{}",
        svc.stderr()
    );
    assert_eq!(ask(&sock).unwrap(), old, "the old process is reachable");
    signal(old, Signal::SIGTERM);
    assert_eq!(svc.wait_first_exit(), Some(0));
    assert!(!sock.exists(), "a stop removes the socket file");
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let scratch = Scratch::new("bad-listen-pid");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let svc = Service::start(
        &example("hello"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "http"),
        ],
    );
    wait_until("hello answers", || hello(addr).is_ok());
    assert_eq!(hello(addr).unwrap(), svc.first_pid());
    assert!(!svc.stderr().contains("panicked"));
}
