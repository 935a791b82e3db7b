//! Soak: the `http` example upgraded again and again under continuous load, keep-alive and
//! fresh connections alike. Nothing may be lost, leaked or left behind: no failed request,
//! the same descriptors in the last generation as in the first upgraded one, no zombie or
//! stray process, and a pid file that always names the live process that answers.
//!
//! `cargo test --test soak` runs 50 upgrades; `cargo test --test soak -- --ignored` runs
//! the long soak of 200.

mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// The soaks share the subreaper's view of orphans and the machine's cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn fifty_upgrades_under_load_lose_no_request_and_leak_nothing() {
    soak(50);
}

#[test]
#[ignore = "long soak (200 upgrades): cargo test --test soak -- --ignored"]
fn two_hundred_upgrades_under_load_lose_no_request_and_leak_nothing() {
    soak(200);
}

fn soak(upgrades: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("soak");
    let tag = unique_tag("soak");
    let _strays = KillTagged(tag.clone());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid_file = scratch.path("http.pid");
    let mut svc = Service::start(
        &example("http"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("TABLEFLIP_PID_FILE", pid_file.to_str().unwrap()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "10s"),
            ("RUST_LOG", "warn"),
            (TAG_VAR, &tag),
        ],
    );
    wait_until("the first answer", || http_pid_of(addr).is_ok());
    let first = svc.first_pid();

    let load = HttpLoad::start(addr, 3, 2, Duration::from_secs(1200));
    let mut pid = first;
    let mut baseline: Option<(i32, Vec<String>)> = None;
    for n in 1..=upgrades {
        signal(pid, Signal::SIGHUP);
        let next = new_pid(&svc, addr, pid, n);
        svc.track(next);

        // The old process drains and exits 0; it is reaped (by us: we are its parent or,
        // once orphaned, its subreaper), never left a zombie.
        let code = if pid == first {
            svc.wait_first_exit()
        } else {
            wait_reaped(pid, WAIT)
        };
        assert_eq!(code, Some(0), "upgrade {n}: old pid {pid} exit code");
        assert!(is_gone(pid), "upgrade {n}: old pid {pid} is still there");
        svc.forget(pid);
        pid = next;

        // The pid file names the live process that answers.
        let named: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("upgrade {n}: unreadable pid file"));
        assert_eq!(
            named, pid,
            "upgrade {n}: the pid file names the new process"
        );
        assert!(
            !is_gone(pid) && !is_zombie(pid),
            "upgrade {n}: {pid} is alive"
        );
        assert_eq!(
            http_pid_of(addr).ok(),
            Some(pid),
            "upgrade {n}: {pid} answers"
        );

        // Exactly one process of this service exists, and it has no children.
        assert_eq!(
            tagged_pids(&tag).into_iter().collect::<Vec<_>>(),
            vec![pid],
            "upgrade {n}: stray processes"
        );
        assert_eq!(children_of(pid), Vec::<i32>::new(), "upgrade {n}: children");

        if baseline.is_none() {
            // The cold process may hold descriptors the test runner leaked to it: the first
            // upgraded generation is the baseline.
            baseline = Some((pid, settled_fds(&load, pid)));
        }
    }
    let (second, second_fds) = baseline.expect("at least one upgrade");
    let last_fds = settled_fds(&load, pid);
    let report = load.finish();
    eprintln!(
        "soak: {upgrades} upgrades, {} requests ok, {} retried (keep-alive race), {} failed, {} pids",
        report.ok,
        report.retried,
        report.failed,
        report.pids.len()
    );
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    // The http example never closes a busy keep-alive connection under its client: after
    // the handover its answers carry `Connection: close` (examples/http.rs), so not even the
    // race that HTTP clients retry happens.
    assert_eq!(
        report.retried, 0,
        "keep-alive connections closed under their clients"
    );
    assert!(report.ok > upgrades, "the load ran: {report:?}");
    assert!(
        report.pids.len() > upgrades / 2,
        "the load reached many generations: {:?}",
        report.pids
    );
    assert_eq!(
        last_fds,
        second_fds,
        "descriptors of generation {} vs generation 2 ({second}):\n{:?}",
        upgrades + 1,
        fds_of(pid)
    );

    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "SIGTERM exit code");
    svc.forget(pid);
    assert_eq!(
        tagged_pids(&tag),
        Default::default(),
        "stray processes at the end"
    );
    let log = svc.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

/// The descriptors of `pid` once its parent is gone (the names pipe, fd 4, is closed then),
/// taken while no client is mid-request.
fn settled_fds(load: &HttpLoad, pid: i32) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let kinds = load.paused(|| fd_kinds(pid));
        if !kinds.iter().any(|k| k == "pipe") {
            return kinds;
        }
        assert!(
            Instant::now() < deadline,
            "a pipe stays open in {pid}: {:?}",
            fds_of(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for a pid other than `old` to answer; the log tells why if none does.
fn new_pid(svc: &Service, addr: SocketAddr, old: i32, n: usize) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        match http_pid_of(addr) {
            Ok(pid) if pid != old => return pid,
            _ => {}
        }
        if Instant::now() > deadline {
            let log = svc.stderr();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("upgrade {n}: no new pid answered; the log ends with:\n{tail:#?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
