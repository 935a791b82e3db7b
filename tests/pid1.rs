//! The service as PID 1 of its own PID namespace, as in a container without an init
//! (`docker run` without `--init`), tested without Docker: `unshare --pid --fork
//! --mount-proc` (`tests/support/pidns.rs`). The runtime finds itself PID 1 and becomes a
//! supervisor: upgrades (SIGHUP to PID 1, as `docker kill -s HUP`) keep the namespace alive,
//! a stop (SIGTERM to PID 1, as `docker stop`) drains, no zombie stays, and the exit status
//! is the last generation's.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

const UPGRADES: usize = 5;
const LOAD_BOUND: Duration = Duration::from_secs(120);

/// The `http` example started as PID 1 of a new namespace on a free loopback port, once it
/// answers: the namespace, the address and the pid that answered first. `None` after one line
/// saying why this machine can't make a namespace.
fn namespace(
    test: &str,
    scratch: &Scratch,
    envs: &[(&str, &str)],
) -> Option<(PidNamespace, SocketAddr, i32)> {
    if let Err(why) = PidNamespace::supported() {
        skip(test, &Unsupported(why));
        return None;
    }
    let addr = loopback(free_port());
    let addr_s = addr.to_string();
    let mut all = vec![("ADDR", addr_s.as_str())];
    all.extend_from_slice(envs);
    let ns = PidNamespace::start(&example("http"), scratch, &all);
    wait_until("the service answers", || http_pid_of(addr).is_ok());
    let first = http_pid_of(addr).unwrap();
    Some((ns, addr, first))
}

/// Waits (bounded) until the namespace holds exactly the supervisor (PID 1) and `main`,
/// neither a zombie: every previous generation has exited and been reaped.
fn only_supervisor_and(ns: &PidNamespace, main: i32) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let procs = ns.processes();
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        if pids == [1, main] && procs.iter().all(|p| p.state != 'Z') {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected only PID 1 and {main} in the namespace, got {procs:#?}\nstderr:\n{}",
            ns.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under HTTP load: five upgrades (SIGHUP to PID 1) each answered by a new generation, with
/// the old one reaped (no zombie, nothing left); then SIGTERM to PID 1 drains the request in
/// flight and the namespace ends with status 0. Not one request fails.
#[test]
fn as_pid_1_upgrades_and_stops_under_load_with_no_zombies() {
    let test = "as_pid_1_upgrades_and_stops_under_load_with_no_zombies";
    let scratch = Scratch::new("pid1");
    let Some((mut ns, addr, mut main)) = namespace(test, &scratch, &[]) else {
        return;
    };
    assert_ne!(main, 1, "the service runs as a child of the supervisor");
    only_supervisor_and(&ns, main);
    assert_eq!(ns.processes()[1].ppid, 1);

    let load = HttpLoad::start(addr, 2, 2, LOAD_BOUND);
    std::thread::sleep(Duration::from_millis(200));
    for i in 1..=UPGRADES {
        ns.signal(Signal::SIGHUP);
        let new = wait_new_http_pid_of(addr, main);
        only_supervisor_and(&ns, new);
        assert!(
            ns.stderr().contains(&format!("main process is now {new}")),
            "upgrade {i}: the supervisor follows MAINPID=; stderr:\n{}",
            ns.stderr()
        );
        main = new;
    }
    let r = load.finish();
    assert!(
        r.failed == 0 && r.ok > 0,
        "{} answered, {} failed, {} retried: {:#?}",
        r.ok,
        r.failed,
        r.retried,
        r.failures
    );
    assert!(
        r.pids.len() > UPGRADES,
        "answers came from every generation: {:?}",
        r.pids
    );

    // docker stop: SIGTERM to PID 1 drains the request in flight.
    let host_main = ns.host_pid(main).expect("the main process's host pid");
    let slow = PendingRequest::send_accepted_by(addr, "/slow?ms=1000", host_main);
    ns.signal(Signal::SIGTERM);
    let body = slow.answer().expect("the request in flight at the stop");
    assert_eq!(parse_pid(&body), Some(main));
    assert_eq!(ns.wait_exit(), Some(0), "stderr:\n{}", ns.stderr());
    eprintln!(
        "{test}: {UPGRADES} upgrades as PID 1 under load, {} requests, 0 failed; stop drained, \
         exit 0",
        r.ok
    );
}

/// The exit status of the namespace is the last main process's: `kill -9` of it ends the
/// namespace with 137 (128 + SIGKILL), as a container's status shows a crash.
#[test]
fn as_pid_1_the_exit_status_is_the_last_generations() {
    let test = "as_pid_1_the_exit_status_is_the_last_generations";
    let scratch = Scratch::new("pid1-status");
    let Some((mut ns, addr, first)) = namespace(test, &scratch, &[]) else {
        return;
    };
    ns.signal(Signal::SIGHUP);
    let main = wait_new_http_pid_of(addr, first);
    only_supervisor_and(&ns, main);
    let host_main = ns.host_pid(main).expect("the main process's host pid");
    signal(host_main, Signal::SIGKILL);
    assert_eq!(ns.wait_exit(), Some(137), "stderr:\n{}", ns.stderr());
}

/// `TABLEFLIP_SUPERVISOR=0`: the service serves as PID 1 itself, and an upgrade ends the
/// namespace (PID 1 exits after its handover, and the kernel kills the rest): what the
/// supervisor is for.
#[test]
fn as_pid_1_without_the_supervisor_an_upgrade_ends_the_namespace() {
    let test = "as_pid_1_without_the_supervisor_an_upgrade_ends_the_namespace";
    let scratch = Scratch::new("pid1-optout");
    let Some((mut ns, addr, first)) = namespace(test, &scratch, &[("TABLEFLIP_SUPERVISOR", "0")])
    else {
        return;
    };
    assert_eq!(first, 1, "the service itself is PID 1");
    ns.signal(Signal::SIGHUP);
    assert_eq!(ns.wait_exit(), Some(0), "stderr:\n{}", ns.stderr());
    assert!(
        http_pid_of(addr).is_err(),
        "nothing serves once PID 1 has handed over and exited"
    );
    assert!(
        ns.stderr().contains("TABLEFLIP_SUPERVISOR=0"),
        "{}",
        ns.stderr()
    );
}
