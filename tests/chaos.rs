//! Chaos: successors that crash, hang or vanish, signal storms, a killed or stopped parent
//! mid-upgrade, and a binary replaced or deleted on disk. Each runs under a client loop and
//! checks that no request fails, every process is reaped and no stray one is left.
//!
//! Bad successors are shell scripts renamed over the service's binary between upgrades (the
//! runtime looks argv\[0\] up afresh at each upgrade); several `exec` a real example with a
//! broken setting, so the failure happens inside the runtime, after the handshake.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use support::*;

/// A service started from a copy of an example at `<scratch>/app`, so that the test can
/// replace or delete the binary the way a deploy would.
struct Deployed {
    svc: Service,
    exe: PathBuf,
    addr: SocketAddr,
    tag: String,
    scratch: Scratch,
    /// Declared last: dropped after `svc`, it kills what the service's tracking missed.
    _strays: KillTagged,
}

impl Deployed {
    /// Starts it; `{scratch}` in an environment value stands for the scratch directory.
    fn start(example_name: &str, envs: &[(&str, &str)]) -> Deployed {
        let scratch = Scratch::new(&format!("chaos-{example_name}"));
        let exe = scratch.path("app");
        install_file(&example(example_name), &exe);
        let tag = unique_tag("chaos");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut all = vec![
            ("ADDR", addr.to_string()),
            (TAG_VAR, tag.clone()),
            ("TABLEFLIP_DRAIN_TIMEOUT", "20s".to_owned()),
        ];
        let dir = scratch.0.to_str().unwrap();
        all.extend(envs.iter().map(|(k, v)| (*k, v.replace("{scratch}", dir))));
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

    /// Replaces the binary with a shell script.
    fn script(&self, body: &str) {
        swap_script(&self.exe, &format!("#!/bin/sh\n{body}\n"));
    }

    /// Deploys a script that records its pid and runs the real `http` example with
    /// `WARMUP_MS`, signals an upgrade, and returns the successor's pid once it warms up
    /// (holding its listener, not ready yet).
    fn upgrade_to_warming_http(&self, old: i32, warmup_ms: u64) -> i32 {
        let succ_pid = self.path("succ.pid");
        self.script(&format!(
            "echo $$ > {}\nWARMUP_MS={warmup_ms} exec {}",
            q(&succ_pid),
            q(&example("http"))
        ));
        signal(old, Signal::SIGHUP);
        let succ = pid_in(&succ_pid);
        self.svc.track(succ);
        self.wait_log("warming up before ready", 1);
        succ
    }

    /// A file in the scratch directory.
    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// Waits (bounded) until the log holds `needle` `n` times.
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

    /// The live processes of this service.
    fn live(&self) -> Vec<i32> {
        tagged_pids(&self.tag).into_iter().collect()
    }
}

/// A pid a script wrote to `path`.
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

/// Shell-quotes a path.
fn q(path: &Path) -> String {
    format!("'{}'", path.display())
}

const FAILED: &str = "upgrade failed; still serving";

#[test]
fn twenty_successors_crashing_in_initialisation_then_a_good_one_takes_over() {
    let d = Deployed::start("hello", &[]);
    wait_until("hello answers", || hello(d.addr).is_ok());
    let old = d.pid();
    let hello_bin = example("hello");
    let load = Load::start(d.addr, 2, 1_000_000, Duration::from_secs(120));

    for i in 0..20 {
        // Four ways to die before ready; the last two inside the runtime, after the
        // handshake: a bad address, and an unwritable pid file once the inherited listener
        // is claimed.
        match i % 4 {
            0 => d.script(&format!("echo 'crash {i}' >&2\nexit 3")),
            1 => d.script("kill -SEGV $$"),
            2 => d.script(&format!("ADDR=not-an-address exec {}", q(&hello_bin))),
            _ => d.script(&format!(
                "TABLEFLIP_PID_FILE={} exec {}",
                q(&d.path("missing-dir/app.pid")),
                q(&hello_bin)
            )),
        }
        signal(old, Signal::SIGHUP);
        d.wait_log(FAILED, i + 1);
        // The crashed child was reaped before the failure was logged.
        assert_eq!(children_of(old), Vec::<i32>::new(), "attempt {i}: children");
        assert_eq!(d.live(), vec![old], "attempt {i}: live processes");
        assert_eq!(
            hello(d.addr).unwrap(),
            old,
            "attempt {i}: the old pid serves"
        );
    }
    let log = d.svc.stderr();
    let failures = log
        .lines()
        .filter(|l| l.contains(FAILED) && l.contains("exited before it was ready"))
        .count();
    assert_eq!(failures, 20, "every failure names the child's exit:\n{log}");
    // The runtime in the children said what was wrong, one line each, and did not panic.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("hello: error: ADDR=\"not-an-address\""))
            .count(),
        5,
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("hello: error: can't write pid file"))
            .count(),
        5,
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    swap_binary(&d.exe, &hello_bin);
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(d.addr, old);
    d.svc.track(new);
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0), "the old process exits 0");
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert!(
        report.pids.is_subset(&[old, new].into()),
        "{:?}",
        report.pids
    );
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");
    assert!(!svc.stderr().contains("panicked"));
}

#[test]
fn a_successor_hanging_past_the_upgrade_timeout_is_killed_and_reaped_and_the_old_one_serves() {
    let d = Deployed::start("hello", &[("TABLEFLIP_UPGRADE_TIMEOUT", "1s")]);
    wait_until("hello answers", || hello(d.addr).is_ok());
    let old = d.pid();
    let load = Load::start(d.addr, 2, 1_000_000, Duration::from_secs(120));

    // A real service that claims the inherited listener and then never becomes ready.
    let hung_pid = d.path("hung.pid");
    d.script(&format!(
        "echo $$ > {}\nWARMUP_MS=600000 exec {}",
        q(&hung_pid),
        q(&example("http"))
    ));
    signal(old, Signal::SIGHUP);
    let hung = pid_in(&hung_pid);
    d.svc.track(hung);
    d.wait_log(FAILED, 1);
    let log = d.svc.stderr();
    assert!(log.contains("wasn't ready within 1s; killed it"), "{log}");
    assert!(log.contains("killed and reaped the new process"), "{log}");
    assert!(
        is_gone(hung),
        "the hung child {hung} was reaped, not left a zombie"
    );
    d.svc.forget(hung);
    assert_eq!(d.live(), vec![old]);
    assert_eq!(hello(d.addr).unwrap(), old, "the old pid serves");

    // The upgrader is not stuck: the next upgrade, with a good binary, succeeds.
    swap_binary(&d.exe, &example("hello"));
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(d.addr, old);
    d.svc.track(new);
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0));
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");
}

#[test]
fn a_successor_exiting_right_after_ready_is_reaped_and_the_old_one_still_drains_and_exits_0() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=1500", old));

    let (child_pid, ready_at) = (d.path("child.pid"), d.path("ready_at"));
    d.script(&format!(
        "echo $$ > {}\ndate +%s%N > {}\nprintf '*' >&3\nexit 0",
        q(&child_pid),
        q(&ready_at)
    ));
    signal(old, Signal::SIGHUP);
    let child = pid_in(&child_pid);
    d.svc.track(child);
    // The old process, still draining the slow request, sees its successor die. It never
    // holds it as a zombie: the successor's parent is the shim until ready (which reaps it if
    // it dies before), and after ready it is an orphan whose reaper is init -- here this
    // test, the subreaper, which reaps it as init would.
    d.wait_log("the successor exited", 1);
    assert!(
        !children_of(old).contains(&child),
        "the successor {child} is not left as the old process's child"
    );
    wait_reaped(child, WAIT);
    assert!(is_gone(child), "the successor {child} was reaped");
    d.svc.forget(child);
    let body = slow.answer().expect("the request in flight is answered");
    assert_eq!(parse_pid(&body), Some(old), "by the old process");
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0), "no old code keeps running");
    let report = load.finish();

    // Up to the successor's ready, nothing failed; after it nobody serves (the successor
    // is gone), which is the successor's fault, not the handover's.
    let ready_ns: u128 = std::fs::read_to_string(&ready_at)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let early: Vec<_> = report
        .failures
        .iter()
        .filter(|(at, _)| at.duration_since(UNIX_EPOCH).unwrap().as_nanos() < ready_ns)
        .collect();
    assert!(early.is_empty(), "failed before the handover: {early:?}");
    assert!(report.ok > 0);
    assert_eq!(tagged_pids(&d.tag), Default::default(), "stray processes");
    // Nothing holds the listening socket any more: a cold start can bind it again.
    std::net::TcpListener::bind(d.addr).expect("the port is free again");
}

#[test]
fn a_successor_crashing_right_after_ready_is_replaced_by_the_draining_old_process() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    // The good binary, for the replacement to run.
    let good = d.path("http-good");
    install_file(&example("http"), &good);
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));
    // A request in flight keeps the old process draining (and holding the sockets).
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=1500", old));

    // The first start says ready, then crashes; the next one is the real service.
    let (crashed, crasher_pid) = (d.path("crashed-once"), d.path("crasher.pid"));
    d.script(&format!(
        "if [ -e {c} ]; then exec {g} \"$@\"; fi\n: > {c}\necho $$ > {p}\nprintf '*' >&3\nexit 1",
        c = q(&crashed),
        g = q(&good),
        p = q(&crasher_pid),
    ));
    signal(old, Signal::SIGHUP);
    let crasher = pid_in(&crasher_pid);
    d.svc.track(crasher);
    d.wait_log("starting the program again", 1);
    d.wait_log("a new successor replaced the crashed one", 1);
    let new = wait_new_http_pid_of(d.addr, old);
    d.svc.track(new);
    assert_ne!(new, crasher);
    assert!(
        is_gone(crasher),
        "the crashed successor {crasher} was reaped"
    );
    d.svc.forget(crasher);

    let body = slow.answer().expect("the request in flight is answered");
    assert_eq!(parse_pid(&body), Some(old), "by the old process");
    let mut svc = d.svc;
    assert_eq!(
        svc.wait_first_exit(),
        Some(0),
        "the old process drains and exits 0"
    );
    // While nobody accepted, connections waited in the backlog of the socket the old
    // process still held: none failed.
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert_eq!(http_pid_of(d.addr).unwrap(), new);
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");
}

#[test]
fn a_storm_of_a_hundred_sighups_runs_exactly_one_upgrade() {
    let d = Deployed::start("hello", &[]);
    wait_until("hello answers", || hello(d.addr).is_ok());
    let old = d.pid();
    let load = Load::start(d.addr, 2, 1_000_000, Duration::from_secs(120));

    let started = Instant::now();
    for _ in 0..100 {
        signal(old, Signal::SIGHUP);
    }
    eprintln!("100 SIGHUPs sent in {:?}", started.elapsed());
    let new = wait_new_pid(d.addr, old);
    d.svc.track(new);
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0), "the old process exits 0");
    let log = svc.stderr();
    assert_eq!(
        log.matches("started new process").count(),
        1,
        "one upgrade at a time, and one only:\n{log}"
    );
    assert!(
        !log.contains(FAILED),
        "no signal of the storm failed:\n{log}"
    );
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");

    // The service is fine: it answers and upgrades again (its parent is gone now).
    signal(new, Signal::SIGHUP);
    let newer = wait_new_pid(d.addr, new);
    svc.track(newer);
    assert_eq!(wait_reaped(new, WAIT), Some(0));
    svc.forget(new);
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert_eq!(tagged_pids(&d.tag), [newer].into(), "live processes");
}

#[test]
fn sigkill_of_the_old_process_while_the_successor_initialises_leaves_the_successor_serving() {
    let d = Deployed::start("http", &[("TABLEFLIP_PID_FILE", "{scratch}/http.pid")]);
    let pid_file = d.path("http.pid");
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));

    // A real successor that warms up for 2 s before it says ready.
    let succ = d.upgrade_to_warming_http(old, 2000);
    // Hold the successor where it is (initialising) while its parent dies.
    signal(succ, Signal::SIGSTOP);
    let mut svc = d.svc;
    load.paused(|| {
        signal(old, Signal::SIGKILL);
        assert_eq!(svc.wait_first_exit(), None, "killed by a signal");
    });
    // Clients go on connecting: the successor holds the listening socket, so their
    // connections wait in its backlog until it is ready.
    std::thread::sleep(Duration::from_millis(100));
    signal(succ, Signal::SIGCONT);
    let new = wait_new_http_pid_of(d.addr, old);
    assert_eq!(new, succ, "the successor became the service");
    // The successor says so (its log is written by a thread of its own: the line may come a
    // moment after it serves).
    wait_until("the successor says it is the service", || {
        svc.stderr().contains("this process is now the service")
    });
    let log = svc.stderr();
    assert!(
        !log.contains("new process is ready"),
        "the old one never saw it ready"
    );
    wait_until("the pid file names the successor", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == succ.to_string())
    });
    assert_eq!(tagged_pids(&d.tag), [succ].into(), "live processes");

    // It is a full service: it upgrades in turn (to the real binary its argv[0] names).
    signal(succ, Signal::SIGHUP);
    let newer = wait_new_http_pid_of(d.addr, succ);
    svc.track(newer);
    assert_eq!(wait_reaped(succ, WAIT), Some(0));
    svc.forget(succ);
    let report = load.finish();
    eprintln!(
        "sigkill: {} ok, {} retried, {} failed",
        report.ok, report.retried, report.failed
    );
    assert_eq!(report.failed, 0, "failed: {:?}", report.failures);
    assert_eq!(tagged_pids(&d.tag), [newer].into(), "live processes");
}

#[test]
fn sigterm_during_an_upgrade_cancels_it_kills_the_child_and_drains_to_exit_0() {
    let d = Deployed::start("http", &[]);
    wait_until("http answers", || http_pid_of(d.addr).is_ok());
    let old = d.pid();
    let load = HttpLoad::start(d.addr, 2, 2, Duration::from_secs(120));

    let succ = d.upgrade_to_warming_http(old, 600_000);
    let slow = load.paused(|| PendingRequest::send_accepted_by(d.addr, "/slow?ms=1000", old));

    let sigterm_at = SystemTime::now();
    signal(old, Signal::SIGTERM);
    d.wait_log("killed and reaped the new process", 1);
    assert!(is_gone(succ), "the child {succ} was killed and reaped");
    d.svc.forget(succ);
    let body = slow.answer().expect("the request in flight is answered");
    assert_eq!(parse_pid(&body), Some(old));
    let mut svc = d.svc;
    assert_eq!(
        svc.wait_first_exit(),
        Some(0),
        "the drain completes: exit 0"
    );
    let report = load.finish();
    // Until the stop, nothing failed; after it the service is gone, as asked.
    let early: Vec<_> = report
        .failures
        .iter()
        .filter(|(at, _)| *at < sigterm_at)
        .collect();
    assert!(early.is_empty(), "failed before the stop: {early:?}");
    assert!(report.ok > 0);
    let log = svc.stderr();
    assert!(!log.contains("upgrade complete"), "{log}");
    assert!(
        log.contains("no upgrade: this process is shutting down") && !log.contains(FAILED),
        "a cancelled upgrade is not reported as a failure of a service that goes on:\n{log}"
    );
    assert_eq!(tagged_pids(&d.tag), Default::default(), "stray processes");
}

#[test]
fn a_binary_replaced_on_disk_is_what_the_next_upgrade_runs() {
    let d = Deployed::start("hello", &[]);
    wait_until("hello answers", || hello(d.addr).is_ok());
    let old = d.pid();
    let load = Load::start(d.addr, 2, 1_000_000, Duration::from_secs(120));

    // hello -> raw (the same service written on the bare Upgrader) -> hello again.
    let mut pid = old;
    let mut svc = d.svc;
    for (n, next_bin) in ["raw", "hello"].into_iter().enumerate() {
        swap_binary(&d.exe, &example(next_bin));
        let on_disk = inode_of(&d.exe).unwrap();
        signal(pid, Signal::SIGHUP);
        let new = wait_new_pid(d.addr, pid);
        svc.track(new);
        assert_eq!(
            exe_inode(new),
            Some(on_disk),
            "{next_bin}: runs the new file"
        );
        let link = std::fs::read_link(format!("/proc/{new}/exe")).unwrap();
        assert_eq!(link, d.exe, "{next_bin}: started from the same path");
        let code = if n == 0 {
            svc.wait_first_exit()
        } else {
            wait_reaped(pid, WAIT)
        };
        assert_eq!(code, Some(0));
        svc.forget(pid);
        pid = new;
    }
    // The code that ran is observable too: hello runs an on_shutdown hook, raw does not.
    let log = svc.stderr();
    assert_eq!(
        log.matches("on_shutdown: hello is going away").count(),
        1,
        "hello drained once, then raw drained without the hook:\n{log}"
    );
    assert!(log.contains("draining"), "raw's drain:\n{log}");
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert_eq!(tagged_pids(&d.tag), [pid].into(), "live processes");
}

#[test]
fn a_deleted_or_unexecutable_binary_fails_the_upgrade_clearly_and_the_service_goes_on() {
    let d = Deployed::start("hello", &[]);
    wait_until("hello answers", || hello(d.addr).is_ok());
    let old = d.pid();
    let load = Load::start(d.addr, 2, 1_000_000, Duration::from_secs(120));

    std::fs::remove_file(&d.exe).unwrap();
    signal(old, Signal::SIGHUP);
    d.wait_log(FAILED, 1);
    let log = d.svc.stderr();
    let failure: Vec<&str> = log.lines().filter(|l| l.contains(FAILED)).collect();
    assert!(
        failure[0].contains(&format!("can't start the new process {}", d.exe.display()))
            && failure[0].contains("No such file or directory"),
        "the log says which file and why: {failure:?}"
    );
    assert_eq!(hello(d.addr).unwrap(), old, "the old pid serves");

    // A file that is there but not executable.
    std::fs::write(&d.exe, "not a program").unwrap();
    signal(old, Signal::SIGHUP);
    d.wait_log(FAILED, 2);
    let log = d.svc.stderr();
    let failure: Vec<&str> = log.lines().filter(|l| l.contains(FAILED)).collect();
    assert!(failure[1].contains("Permission denied"), "{failure:?}");
    assert_eq!(d.live(), vec![old]);

    // Deploy again: the next upgrade works.
    swap_binary(&d.exe, &example("hello"));
    signal(old, Signal::SIGHUP);
    let new = wait_new_pid(d.addr, old);
    d.svc.track(new);
    let mut svc = d.svc;
    assert_eq!(svc.wait_first_exit(), Some(0));
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed: {:?}", report.errors);
    assert!(report.pids.is_subset(&[old, new].into()));
    assert_eq!(tagged_pids(&d.tag), [new].into(), "live processes");
}
