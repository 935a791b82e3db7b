//! The notify protocol beyond readiness, against a stand-in for systemd's notification socket
//! (`tests/support/notify.rs`: it accepts messages only from the main process, and follows
//! `MAINPIDFD=1` as systemd >= 255 does, which neither Debian 12's systemd 252 nor 254 from
//! bookworm-backports does): `STATUS=` lines, `EXTEND_TIMEOUT_USEC=` while a start or an
//! upgrade warms up, `WATCHDOG=1` pings from the main process only, and the successor's pidfd
//! passed with `MAINPID=`. `tests/real_systemd.rs` runs the same features under a real
//! systemd.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;

/// The messages' positions: the first from `pid` that `matches`.
fn find(notes: &[Note], pid: i32, matches: impl Fn(&Note) -> bool) -> Option<usize> {
    notes.iter().position(|n| n.pid == pid && matches(n))
}

fn count(notes: &[Note], pid: i32, text: &str) -> usize {
    notes
        .iter()
        .filter(|n| n.pid == pid && n.text == text)
        .count()
}

/// An extension is a positive number of microseconds, at most a few seconds.
fn plausible_extension(n: &Note) -> bool {
    n.field("EXTEND_TIMEOUT_USEC")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|usec| usec > 0 && usec <= 5_000_000)
}

/// A cold start that warms up (1 s) extends the start timeout before `READY=1`, then says
/// `serving`; the watchdog is pinged; at an upgrade the serving process says what it waits
/// for, extends the reload timeout while the successor warms up, and hands over with
/// `MAINPID=`, `MAINPIDFD=1` (the successor's pidfd) and the successor's status in one
/// message. The successor sends nothing before that, the old process no ping after it. A
/// stop says how many connections it drains.
#[test]
fn status_extensions_watchdog_and_mainpidfd_across_an_upgrade_and_a_stop() {
    let scratch = Scratch::new("notify-protocol");
    let notify = StandIn::bind(&scratch);
    let exe = example("http");
    let env = notify.env();
    let port = free_port();
    let addr_s = format!("127.0.0.1:{port}");
    let addr: SocketAddr = addr_s.parse().unwrap();
    let envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("ADDR", addr_s.as_str()),
        ("WARMUP_MS", "1000"),
        ("WATCHDOG_USEC", "600000"),
        ("TABLEFLIP_MAINPIDFD", "1"),
    ];
    notify.expect_new_main();
    let mut svc = Service::start(&exe, &scratch, &envs);
    let a = svc.first_pid();
    notify.set_main(a);

    let serving_a = format!("STATUS=serving (pid {a})");
    let notes = notify.wait_for_all("two pings after `serving` from the first process", |n| {
        find(n, a, |m| m.text == serving_a).is_some_and(|at| count(&n[at..], a, "WATCHDOG=1") >= 2)
    });
    let ready = find(&notes, a, |m| m.text == "READY=1").expect("READY=1");
    assert!(
        notes[..ready]
            .iter()
            .any(|n| n.pid == a && plausible_extension(n)),
        "EXTEND_TIMEOUT_USEC= while warming up: {notes:#?}"
    );
    assert_eq!(http_pid_of(addr).unwrap(), a);

    signal(a, Signal::SIGHUP);
    let notes = notify.wait_for_all("the handover", |n| {
        find(n, a, |m| m.field("MAINPID").is_some()).is_some()
    });
    let h = find(&notes, a, |m| m.field("MAINPID").is_some()).unwrap();
    let b: i32 = notes[h].field("MAINPID").unwrap().parse().unwrap();
    svc.track(b);
    assert_eq!(
        notes[h].text,
        format!("MAINPID={b}\nMAINPIDFD=1\nREADY=1\nSTATUS=serving (pid {b})")
    );
    assert_eq!(notes[h].fds, 1, "the pidfd goes with the message");
    assert_eq!(notes[h].pidfd_pid, Some(b), "a pidfd of the successor");
    assert!(notes[h].accepted);
    assert_eq!(notify.main(), Some(b));

    let reloading = find(&notes, a, |m| m.text.starts_with("RELOADING=1\n")).expect("RELOADING=1");
    let upgrade: Vec<&Note> = notes[reloading..h].iter().filter(|n| n.pid == a).collect();
    let texts: Vec<&str> = upgrade
        .iter()
        .map(|n| n.text.as_str())
        .filter(|t| t.starts_with("STATUS="))
        .collect();
    assert_eq!(
        texts,
        [
            format!("STATUS=upgrading: starting a new process (pid {a} serves)"),
            format!("STATUS=upgrading to pid {b}: waiting until it is ready (pid {a} serves)"),
        ],
        "{notes:#?}"
    );
    assert!(
        upgrade.iter().any(|n| plausible_extension(n)),
        "EXTEND_TIMEOUT_USEC= while the successor warms up: {notes:#?}"
    );
    // The successor is not the main process before the handover. It starts pinging once
    // the old process has released it, right before the handover message: a ping that
    // falls in that instant is refused (systemd logs a line), at most one.
    let early: Vec<&Note> = notes[..h].iter().filter(|n| n.pid == b).collect();
    assert!(
        early.len() <= 1 && early.iter().all(|n| n.text == "WATCHDOG=1"),
        "the successor is not the main process before the handover: {notes:#?}"
    );

    assert_eq!(svc.wait_first_exit(), Some(0), "{}", svc.stderr());
    let notes = notify.wait_for_all("two pings from the successor", |n| {
        count(&n[h..], b, "WATCHDOG=1") >= 2
    });
    assert!(
        notes[h + 1..]
            .iter()
            .all(|n| n.pid != a || n.text == "BARRIER=1"),
        "the old process is not the main one after the handover: {notes:#?}"
    );
    let rejected: Vec<&Note> = notes
        .iter()
        .filter(|n| !(n.accepted || n.pid == b && n.text == "WATCHDOG=1"))
        .collect();
    assert!(rejected.is_empty(), "{rejected:#?}");

    let slow = PendingRequest::send_accepted_by(addr, "/slow?ms=1500", b);
    signal(b, Signal::SIGTERM);
    notify.wait_for_all("the draining status", |n| {
        find(n, b, |m| m.text.starts_with("STATUS=stopping: draining ")).is_some()
    });
    assert_eq!(
        slow.answer().map(|body| parse_pid(&body)).ok().flatten(),
        Some(b)
    );
    assert_eq!(wait_reaped(b, WAIT), Some(0), "{}", svc.stderr());
}

/// `WATCHDOG_PID` naming another process: the variables are not meant for this one, which
/// then does not ping (an unrelated process that inherited them must not keep a unit alive).
#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let scratch = Scratch::new("notify-watchdog-pid");
    let notify = StandIn::bind(&scratch);
    let exe = example("http");
    let env = notify.env();
    let port = free_port();
    let addr_s = format!("127.0.0.1:{port}");
    let envs = [
        ("NOTIFY_SOCKET", env.as_str()),
        ("ADDR", addr_s.as_str()),
        ("WATCHDOG_USEC", "300000"),
        ("WATCHDOG_PID", "1"),
    ];
    notify.expect_new_main();
    let svc = Service::start(&exe, &scratch, &envs);
    let a = svc.first_pid();
    notify.set_main(a);
    let serving = format!("STATUS=serving (pid {a})");
    notify.wait_for_all("serving", |n| find(n, a, |m| m.text == serving).is_some());
    // Ten watchdog periods.
    std::thread::sleep(Duration::from_secs(3));
    let notes = notify.all_notes();
    assert_eq!(count(&notes, a, "WATCHDOG=1"), 0, "{notes:#?}");
    signal(a, Signal::SIGTERM);
    assert_eq!(wait_reaped(a, WAIT), Some(0), "{}", svc.stderr());
}
