//! What operators really do, to which process, in which environment: each test starts the
//! examples as real processes under a client loop and checks that nothing is lost.
//!
//! `TF_EXAMPLES_DIR=<dir>` runs them against other builds of the examples (to show that a
//! test fails on older code).

mod support;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// The example `name`, from `TF_EXAMPLES_DIR` if set.
fn bin(name: &str) -> PathBuf {
    match std::env::var_os("TF_EXAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => example(name),
    }
}

const FAILED: &str = "upgrade failed; still serving";

/// A service started from a copy of an example at `<scratch>/app`, so that the test can
/// replace the binary the way a deploy would.
struct Deployed {
    svc: Service,
    exe: PathBuf,
    addr: SocketAddr,
    tag: String,
    scratch: Scratch,
    _strays: KillTagged,
}

impl Deployed {
    fn start(example_name: &str, envs: &[(&str, &str)]) -> Deployed {
        let scratch = Scratch::new(&format!("op-{example_name}"));
        let exe = scratch.path("app");
        install_file(&bin(example_name), &exe);
        let tag = unique_tag("op");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut all = vec![
            ("ADDR", addr.to_string()),
            (TAG_VAR, tag.clone()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "20s".to_owned()),
        ];
        all.extend(envs.iter().map(|(k, v)| (*k, v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let svc = Service::start(&exe, &scratch, &all);
        Deployed {
            svc,
            exe,
            addr,
            _strays: KillTagged(tag.clone()),
            tag,
            scratch,
        }
    }

    fn pid(&self) -> i32 {
        self.svc.first_pid()
    }

    fn script(&self, body: &str) {
        swap_script(&self.exe, &format!("#!/bin/sh\n{body}\n"));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    fn wait_log(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.svc.log_count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} x {needle:?} in the log:\n{}",
                self.svc.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Deploys a script that records its pid and runs the real `http` example with
    /// `WARMUP_MS`, signals an upgrade, and returns the successor's pid once it warms up.
    fn upgrade_to_warming_http(&self, old: i32, warmup_ms: u64) -> i32 {
        let succ_pid = self.path("succ.pid");
        let _ = std::fs::remove_file(&succ_pid);
        self.script(&format!(
            "echo $$ > {}\nWARMUP_MS={warmup_ms} exec {}",
            q(&succ_pid),
            q(&bin("http"))
        ));
        let before = self.svc.log_count("warming up before ready");
        signal(old, Signal::SIGHUP);
        let succ = pid_in(&succ_pid);
        self.svc.track(succ);
        self.wait_log("warming up before ready", before + 1);
        succ
    }
}

fn pid_in(path: &Path) -> i32 {
    let mut pid = None;
    wait_until(&format!("a pid in {}", path.display()), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

fn q(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// (1) A stop signal to a successor that is still starting: it aborts without ever saying
/// ready, and the old process counts a failed upgrade and serves on.
#[test]
fn a_stop_signal_to_a_starting_successor_aborts_it_and_the_old_process_serves_on() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));

    let succ = d.upgrade_to_warming_http(old, 1500);
    signal(succ, Signal::SIGTERM);
    d.wait_log(FAILED, 1);
    let log = d.svc.stderr();
    let failure = log.lines().find(|l| l.contains(FAILED)).unwrap();
    assert!(
        failure.contains("exited before it was ready") && failure.contains("SIGTERM"),
        "the old process says the successor died of the stop signal: {failure}"
    );
    assert!(!log.contains("new process is ready"), "{log}");
    d.wait_log("stopped before ready", 1);
    // Well past the successor's warm-up: it never said ready, the old process serves on.
    std::thread::sleep(Duration::from_millis(2000));
    assert!(!d.svc.stderr().contains("new process is ready"));
    assert!(is_gone(succ), "the successor was reaped");
    d.svc.forget(succ);
    assert_eq!(http_pid_of(d.addr).unwrap(), old);
    assert_eq!(tagged_pids(&d.tag), [old].into(), "live processes");
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert!(report.pids.iter().all(|&p| p == old), "{:?}", report.pids);
}

/// (2) A replacement that the draining old process starts after its successor crashed
/// outlives the old process and serves.
#[test]
fn a_replacement_for_a_crashed_successor_outlives_the_old_process() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let good = d.path("http-good");
    install_file(&bin("http"), &good);
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));
    // A short request in flight keeps the old process draining a little.
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=300", old));

    // The first start says ready and crashes; the replacement warms up for longer than the
    // old process still has to drain.
    let (crashed, repl_pid) = (d.path("crashed-once"), d.path("replacement.pid"));
    d.script(&format!(
        "if [ -e {c} ]; then echo $$ > {r}; WARMUP_MS=1500 exec {g} \"$@\"; fi\n: > {c}\nprintf '*' >&3\nexit 1",
        c = q(&crashed),
        g = q(&good),
        r = q(&repl_pid),
    ));
    signal(old, Signal::SIGHUP);
    d.wait_log("starting the program again", 1);
    let replacement = pid_in(&repl_pid);
    d.svc.track(replacement);
    assert_eq!(parse_pid(&slow.answer().unwrap()), Some(old));
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0), "the old process exits 0");
    let new = wait_new_http_pid_of(d.addr, old);
    assert_eq!(new, replacement, "the replacement serves");
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert_eq!(tagged_pids(&d.tag), [replacement].into(), "live processes");
}

/// A pipe whose write end is handed out as stderr and whose read end nobody reads (a
/// stuck log shipper), shrunk to one page so that it fills at once.
fn stuck_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    (r, w)
}

/// A connected unix stream socket pair (the journal's kind of stderr): `(read, write)`, the
/// buffers shrunk so that it fills at once.
fn stuck_socket() -> (OwnedFd, OwnedFd) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
    let (r, w) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    setsockopt(&w, sockopt::SndBuf, &4096).unwrap();
    setsockopt(&r, sockopt::RcvBuf, &4096).unwrap();
    (r, w)
}

/// (3) stderr a pipe nobody reads: logging never blocks serving; dropped lines are counted
/// and reported once stderr is read again; the last lines are flushed at exit.
#[test]
fn a_stderr_nobody_reads_never_stops_the_service() {
    stderr_nobody_reads("stderr", stuck_pipe());
}

/// (3) The same with stderr a socket, as the journal's stream is: lines are sent without
/// waiting (`MSG_DONTWAIT`) until the socket is full, then queued.
#[test]
fn a_stderr_socket_nobody_reads_never_stops_the_service() {
    stderr_nobody_reads("stderr-sock", stuck_socket());
}

fn stderr_nobody_reads(name: &str, (read, write): (OwnedFd, OwnedFd)) {
    subreaper();
    cloexec_leaked_fds();
    let scratch = Scratch::new(&format!("op-{name}"));
    let exe = scratch.path("app");
    install_file(&bin("hello"), &exe);
    let tag = unique_tag(name);
    let _strays = KillTagged(tag.clone());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut first = Command::new(&exe);
    first
        .env("ADDR", addr.to_string())
        .env(TAG_VAR, &tag)
        .env("RUST_LOG", "debug")
        .current_dir(&scratch.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write));
    let mut first = {
        let mut cmd = first;
        spawn_retrying_busy(&mut cmd)
        // The command, and with it our copy of the pipe's write end, is dropped here.
    };
    let old = first.id() as i32;
    wait_until("hello answers", || hello(addr).is_ok());
    let load = Load::start(addr, 2, 1_000_000, Duration::from_secs(120));

    // An upgrade that hangs, and a storm of upgrade signals while it does: one log line
    // each, far more than the pipe and the log queue hold.
    let hang_pid = scratch.path("hang.pid");
    swap_script(
        &exe,
        &format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", q(&hang_pid)),
    );
    signal(old, Signal::SIGHUP);
    let hang = pid_in(&hang_pid);
    for i in 0..3000 {
        signal(old, Signal::SIGHUP);
        if i % 100 == 0 {
            // Still serving, at once.
            assert_eq!(hello(addr).unwrap(), old, "after {i} signals");
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(hello(addr).unwrap(), old);
    // The hanging successor dies; the upgrader is not stuck either.
    signal(hang, Signal::SIGKILL);
    let _ = wait_reaped(hang, WAIT);
    assert_eq!(hello(addr).unwrap(), old);

    // Now stderr is read again: the next lines say how many were dropped, and the last
    // lines arrive before each process exits.
    let reader = std::thread::spawn(move || read_all(std::fs::File::from(read)));
    std::thread::sleep(Duration::from_millis(300));
    swap_binary(&exe, &bin("hello"));
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(addr, old);
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert_eq!(wait_reaped(old, WAIT), Some(0), "the old process exits 0");
    let _ = first.wait();
    signal(new, Signal::SIGTERM);
    assert_eq!(wait_reaped(new, WAIT), Some(0));
    let log = reader.join().unwrap();
    assert!(
        log.contains("log line(s) dropped"),
        "the drop is reported: {}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(
        log.lines()
            .any(|l| l.contains("drained; exiting") && l.contains(&format!("pid={new}"))),
        "the last lines are flushed at exit: {}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(!log.contains("panicked"));
    assert_eq!(tagged_pids(&tag), Default::default(), "stray processes");
}

/// (4) After a handover, a stop signal to the old process (systemd's control-group stop
/// sends one to every process) continues its drain; only a second one forces the exit.
#[test]
fn after_a_handover_the_first_stop_signal_continues_the_drain_and_the_second_forces_it() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=1500", old));
    let hung = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=60000", old));

    swap_binary(&d.exe, &bin("http"));
    signal(old, Signal::SIGHUP);
    d.wait_log("upgrade complete", 1);
    let new = wait_new_http_pid_of(d.addr, old);
    d.svc.track(new);
    signal(old, Signal::SIGTERM);
    let body = slow.answer().expect("the request in flight is answered");
    assert_eq!(
        parse_pid(&body),
        Some(old),
        "by the old process, still draining"
    );
    assert!(!is_gone(old), "one stop signal does not end the drain");
    signal(old, Signal::SIGTERM);
    let mut svc = d.svc;
    assert_eq!(
        svc.wait_first_exit(),
        Some(128 + 15),
        "the second one forces it"
    );
    assert!(
        hung.answer().is_err(),
        "the 60 s request was cut by the forced exit"
    );
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");
}

/// (5) The start-up directory is deleted (a rotated deploy directory): upgrades work, as in
/// Go; a binary named relative to it fails with an error that says so.
#[test]
fn upgrades_work_when_the_startup_directory_was_deleted() {
    let scratch = Scratch::new("op-cwd");
    let exe = scratch.path("app");
    install_file(&bin("hello"), &exe);
    let release = scratch.path("release");
    std::fs::create_dir(&release).unwrap();
    let tag = unique_tag("cwd");
    let _strays = KillTagged(tag.clone());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    subreaper();
    let stderr = scratch.path("stderr");
    let mut cmd = Command::new(&exe);
    cmd.env("ADDR", addr.to_string())
        .env(TAG_VAR, &tag)
        .current_dir(&release)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut first = spawn_retrying_busy(&mut cmd);
    let old = first.id() as i32;
    wait_until("hello answers", || hello(addr).is_ok());
    let load = Load::start(addr, 2, 1_000_000, Duration::from_secs(120));
    std::fs::remove_dir(&release).unwrap();

    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(addr, old);
    assert_eq!(first.wait().unwrap().code(), Some(0));
    // And again, from the successor (which started in the deleted directory).
    signal(new, Signal::SIGHUP);
    let newer = wait_new_pid(addr, new);
    assert_eq!(wait_reaped(new, WAIT), Some(0));
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    signal(newer, Signal::SIGTERM);
    assert_eq!(wait_reaped(newer, WAIT), Some(0));
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(!log.contains(FAILED), "{log}");
}

/// (6) Zero or absurd durations are refused at start-up with one clear line and exit 1.
#[test]
fn zero_or_absurd_durations_are_refused_at_startup() {
    let scratch = Scratch::new("op-durations");
    for var in ["TABLEFLIP_UPGRADE_TIMEOUT", "TABLEFLIP_DRAIN_TIMEOUT"] {
        for value in ["0s", "0ms", "1ns", "876000h", "100000h"] {
            let mut cmd = Command::new(bin("hello"));
            cmd.env("ADDR", "127.0.0.1:0").env(var, value);
            let mut svc = Service::spawn(cmd, &scratch);
            let deadline = Instant::now() + Duration::from_secs(10);
            let code = loop {
                if let Some(code) = is_exited(&mut svc) {
                    break code;
                }
                assert!(
                    Instant::now() < deadline,
                    "{var}={value} was accepted: the service runs"
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            let stderr = svc.stderr();
            assert_eq!(code, Some(1), "{var}={value}: {stderr}");
            assert_eq!(
                stderr.lines().count(),
                1,
                "{var}={value}: one line: {stderr}"
            );
            assert!(
                stderr.contains(var) && stderr.contains("hello: error:"),
                "{var}={value}: {stderr}"
            );
        }
    }
}

/// Starts `exe` with the open-files limit `n` (soft and hard); stderr to a file.
fn start_limited(exe: &Path, scratch: &Scratch, addr: SocketAddr, n: u64, tag: &str) -> Service {
    // util-linux's prlimit sets the limit and execs the service: the service's pid is the
    // one the test started.
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={n}:{n}"))
        .arg("--")
        .arg(exe)
        .env("ADDR", addr.to_string())
        .env(TAG_VAR, tag);
    Service::spawn(cmd, scratch)
}

/// (7) No panic at any open-files limit: one clear line and a non-zero exit, or serving
/// (and upgrading, or failing an upgrade cleanly).
#[test]
fn no_panic_at_any_open_files_limit() {
    cloexec_leaked_fds();
    let scratch = Scratch::new("op-nofile");
    let exe = scratch.path("app");
    install_file(&bin("hello"), &exe);
    let tag = unique_tag("nofile");
    let _strays = KillTagged(tag.clone());
    let mut served = Vec::new();
    for n in (3..=20).chain([24, 32, 40, 48, 64]) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut svc = start_limited(&exe, &scratch, addr, n, &tag);
        let deadline = Instant::now() + WAIT;
        let serving = loop {
            if hello(addr).is_ok() {
                break true;
            }
            if let Some(code) = is_exited(&mut svc) {
                assert_ne!(code, Some(101), "limit {n}: panicked: {}", svc.stderr());
                assert!(code.is_some_and(|c| c != 0), "limit {n}: {code:?}");
                break false;
            }
            assert!(
                Instant::now() < deadline,
                "limit {n}: neither served nor exited"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let log = svc.stderr();
        assert!(!log.contains("panicked"), "limit {n}: {log}");
        if !serving {
            let lines: Vec<&str> = log.lines().collect();
            assert_eq!(lines.len(), 1, "limit {n}: one line: {log}");
            continue;
        }
        served.push(n);
        // An upgrade works, or fails cleanly and the service goes on.
        let old = svc.first_pid();
        signal(old, Signal::SIGHUP);
        wait_until("an upgrade outcome", || {
            let log = svc.stderr();
            log.contains(FAILED) || log.contains("upgrade complete")
        });
        let log = svc.stderr();
        assert!(!log.contains("panicked"), "limit {n}: {log}");
        if log.contains("upgrade complete") {
            let new = wait_new_pid(addr, old);
            svc.track(new);
            assert_eq!(svc.wait_first_exit(), Some(0));
            signal(new, Signal::SIGTERM);
            assert_eq!(wait_reaped(new, WAIT), Some(0), "limit {n}");
            svc.forget(new);
        } else {
            assert_eq!(hello(addr).unwrap(), old, "limit {n}: still serving");
            signal(old, Signal::SIGTERM);
            assert_eq!(svc.wait_first_exit(), Some(0), "limit {n}");
        }
        assert!(!svc.stderr().contains("panicked"), "limit {n}");
    }
    assert!(served.contains(&64), "a limit of 64 serves: {served:?}");
}

fn is_exited(svc: &mut Service) -> Option<Option<i32>> {
    let pid = nix::unistd::Pid::from_raw(svc.first_pid());
    match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Some(Some(code)),
        Ok(nix::sys::wait::WaitStatus::Signaled(..)) => Some(None),
        _ => None,
    }
}

/// (8) Out of descriptors, accept fails: the service backs off, logs a bounded number of
/// lines, and serves again once descriptors are free.
#[test]
fn accept_errors_back_off_with_a_bounded_log_and_serving_resumes() {
    cloexec_leaked_fds();
    let scratch = Scratch::new("op-emfile");
    let exe = scratch.path("app");
    install_file(&bin("http"), &exe);
    let tag = unique_tag("emfile");
    let _strays = KillTagged(tag.clone());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut svc = start_limited(&exe, &scratch, addr, 64, &tag);
    wait_until("http answers", || http_pid_of(addr).is_ok());
    let pid = svc.first_pid();

    // Idle connections: the server accepts them and waits for their first bytes, until it
    // runs out of descriptors.
    let idle: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
        .collect();
    wait_until("accept fails", || {
        svc.stderr().contains("accept failed; backing off")
    });
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let lines = svc.log_count("accept failed; backing off");
    let secs = started.elapsed().as_secs() + 2;
    assert!(
        lines as u64 <= secs,
        "{lines} lines in about {secs} s: {}",
        svc.stderr()
    );
    drop(idle);
    // Descriptors free up: it serves again.
    wait_until("serving again", || {
        http_pid_of(addr).is_ok_and(|p| p == pid)
    });
    signal(pid, Signal::SIGTERM);
    assert_eq!(svc.wait_first_exit(), Some(0));
}

/// An upgrade signal to a successor while its parent still drains is not lost: the
/// successor upgrades as soon as the parent has exited.
#[test]
fn an_upgrade_signal_to_a_successor_whose_parent_still_drains_runs_once_the_parent_exits() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=2000", old));
    swap_binary(&d.exe, &bin("http"));
    signal(old, Signal::SIGHUP);
    let gen2 = wait_new_http_pid_of(d.addr, old);
    d.svc.track(gen2);
    signal(gen2, Signal::SIGHUP);
    assert_eq!(parse_pid(&slow.answer().unwrap()), Some(old));
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0));
    let gen3 = wait_new_http_pid_of(d.addr, gen2);
    svc.track(gen3);
    assert_eq!(wait_reaped(gen2, WAIT), Some(0));
    svc.forget(gen2);
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert_eq!(tagged_pids(&d.tag), [gen3].into(), "live processes");
}

/// stderr on `/dev/full` or closed, stdin and stdout closed: the service serves, upgrades
/// and stops, and a start-up error is still a clean exit 1 (not a panic).
#[test]
fn a_full_or_closed_stderr_never_panics_or_stops_the_service() {
    cloexec_leaked_fds();
    let scratch = Scratch::new("op-devfull");
    let exe = scratch.path("app");
    install_file(&bin("hello"), &exe);
    let tag = unique_tag("devfull");
    let _strays = KillTagged(tag.clone());
    subreaper();
    for closed in [false, true] {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = if closed {
            // The shell closes 0, 1 and 2, then becomes the service.
            let mut sh = Command::new("sh");
            sh.arg("-c").arg("exec \"$0\" <&- >&- 2>&-").arg(&exe);
            sh
        } else {
            Command::new(&exe)
        };
        cmd.env("ADDR", addr.to_string()).env(TAG_VAR, &tag);
        if !closed {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(full);
        }
        let mut first = spawn_retrying_busy(&mut cmd);
        let old = first.id() as i32;
        wait_until("hello answers", || hello(addr).is_ok());
        signal(old, Signal::SIGHUP);
        let new = wait_new_pid(addr, old);
        assert_eq!(first.wait().unwrap().code(), Some(0), "closed={closed}");
        signal(new, Signal::SIGTERM);
        assert_eq!(wait_reaped(new, WAIT), Some(0), "closed={closed}");

        // A start-up error with nowhere to say it: exit 1, not a panic (101).
        let mut bad = if closed {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg("exec \"$0\" 2>&-").arg(&exe);
            sh
        } else {
            Command::new(&exe)
        };
        bad.env("ADDR", "not-an-address");
        if !closed {
            bad.stderr(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        }
        let status = bad.status().unwrap();
        assert_eq!(status.code(), Some(1), "closed={closed}");
    }
}
