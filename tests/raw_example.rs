//! The runtime-only example (`examples/raw.rs`) driven from outside: upgrades under a client
//! loop, no leaked descriptors, and successors that crash or hang leave the old one serving.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

#[test]
fn ten_sighup_upgrades_under_load_lose_nothing_and_leak_no_fds() {
    let scratch = Scratch::new("raw");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let svc = Service::start(&example("raw"), &scratch, &[("ADDR", &addr.to_string())]);
    wait_until("first answer", || hello(addr).is_ok());
    let first = svc.first_pid();
    assert_eq!(hello(addr).unwrap(), first, "the service on {addr} is ours");

    let load = Load::start(addr, 4, 1_000_000, Duration::from_secs(120));
    let mut pid = first;
    // The cold process may hold descriptors the test runner leaked into it; compare the
    // first upgraded generation with the last instead.
    let mut second = None;
    for _ in 0..10 {
        signal(pid, Signal::SIGHUP);
        let next = wait_new_pid(addr, pid);
        svc.track(next);
        assert!(
            wait_reaped(pid, WAIT).is_some() || is_gone(pid),
            "old pid {pid} still there"
        );
        assert!(is_gone(pid), "old pid {pid} is a zombie or alive");
        pid = next;
        if second.is_none() {
            second = Some((pid, load.paused(|| fd_kinds(pid))));
        }
    }
    let (second, second_fds) = second.unwrap();
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed connections: {:?}", report.errors);
    assert!(report.ok > 0);
    // Let the last parent's exit reach the new process (fd 4 closes), then compare.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        fd_kinds(pid),
        second_fds,
        "descriptors of the 11th generation vs the 2nd ({second}):\n{:?}",
        fds_of(pid)
    );
    assert!(
        !fd_kinds(pid).iter().any(|k| k == "pipe"),
        "a handshake pipe leaked: {:?}",
        fds_of(pid)
    );

    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_reaped(pid, WAIT), Some(0), "SIGTERM exit code");
}

/// Replaces the binary on disk with a script and checks that the upgrade fails while the
/// old process keeps serving.
fn broken_successor(script: &str, envs: &[(&str, &str)]) {
    let scratch = Scratch::new("raw-broken");
    let exe = scratch.path("raw");
    std::fs::copy(example("raw"), &exe).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut all = vec![("ADDR", addr.to_string())];
    all.extend(envs.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = Service::start(&exe, &scratch, &all);
    wait_until("first answer", || hello(addr).is_ok());
    let pid = svc.first_pid();
    assert_eq!(hello(addr).unwrap(), pid, "the service on {addr} is ours");

    // Swap the binary for one that fails in initialisation.
    let tmp = scratch.path("raw.new");
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &exe).unwrap();

    let load = Load::start(addr, 2, 1_000_000, Duration::from_secs(60));
    signal(pid, Signal::SIGHUP);
    wait_until("the failed upgrade in the log", || {
        svc.stderr().contains("upgrade failed")
    });
    let report = load.finish();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(
        report.pids.iter().copied().collect::<Vec<_>>(),
        vec![pid],
        "only the old pid serves"
    );
    assert_eq!(hello(addr).unwrap(), pid);
}

#[test]
fn successor_crashing_in_initialisation_leaves_the_old_pid_serving() {
    broken_successor("#!/bin/sh\necho crashing >&2\nexit 1\n", &[]);
}

#[test]
fn successor_hanging_in_initialisation_is_killed_and_the_old_pid_serves() {
    broken_successor(
        "#!/bin/sh\nexec sleep 30\n",
        &[("TABLEFLIP_UPGRADE_TIMEOUT", "500ms")],
    );
}

/// The variable names in `/proc/<pid>/environ`: what the process was started with.
fn environ_names(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, _)| k.to_owned())
        })
        .collect()
}

/// The safe path never changes the environment (`raw` builds its runtime, with its threads,
/// before `Upgrader::new`), yet the successor an upgrade starts sees none of the variables
/// that describe its parent's own inheritance: socket activation meant for another process
/// is ignored and not passed on, and the sentinel is the successor's own.
#[test]
fn a_program_that_starts_threads_first_upgrades_and_passes_on_no_listen_variables() {
    let scratch = Scratch::new("raw-env");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let svc = Service::start(
        &example("raw"),
        &scratch,
        &[
            ("ADDR", &addr.to_string()),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "http"),
        ],
    );
    wait_until("first answer", || hello(addr).is_ok());
    let first = svc.first_pid();
    assert_eq!(hello(addr).unwrap(), first, "the service on {addr} is ours");
    assert!(environ_names(first).iter().any(|v| v == "LISTEN_FDS"));

    signal(first, Signal::SIGHUP);
    let next = wait_new_pid(addr, first);
    svc.track(next);
    let names = environ_names(next);
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        assert!(
            !names.iter().any(|v| v == var),
            "the successor was started with {var}: {names:?}"
        );
    }
    assert!(
        names.iter().any(|v| v == "ADDR"),
        "the rest of the environment is passed on: {names:?}"
    );
    assert!(
        wait_reaped(first, WAIT).is_some() || is_gone(first),
        "old pid {first} still there"
    );

    signal(next, Signal::SIGTERM);
    assert_eq!(wait_reaped(next, WAIT), Some(0), "SIGTERM exit code");
}
