//! The units of `examples/systemd/`, as written, under a real systemd: each test boots
//! systemd as PID 1 of its own container (`tests/support/container.rs`: an overlay of `/`
//! with a tmpfs upper layer, `systemd-nspawn -b --private-network`), installs the `http`
//! example as `/usr/local/bin/http` and the unit files in `/etc/systemd/system`, and drives
//! them with `systemctl` while clients inside the container's network count every failed
//! request.
//!
//! After every step: 0 failed requests, systemd's MainPID is the process that answers, the
//! unit is `active/running`; after a stop: `inactive/dead`, `Result=success`, and no process
//! left in the unit's cgroup. A failure prints the unit's state, its processes and its
//! journal.
//!
//! Debian 12's systemd 252 runs `Type=notify` with `ExecReload=` and the socket-activated
//! unit; `Type=notify-reload` runs under systemd 254 from bookworm-backports, unpacked by
//! `tests/support/fetch-newer-systemd.sh` and laid over the host's as an overlay layer.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Where every unit of examples/systemd/ serves (`ADDR=`, `ListenStream=`).
const ADDR: &str = "127.0.0.1:8080";

/// Reloads in the long run; shorter scenarios reload a few times before what they test.
const RELOADS: usize = 10;
const FEW_RELOADS: usize = 3;

/// How long the requests in flight at a stop take.
const SLOW_MS: u64 = 3000;

/// The bound on one load phase.
const LOAD_BOUND: Duration = Duration::from_secs(120);

fn addr() -> SocketAddr {
    ADDR.parse().unwrap()
}

/// A unit file of examples/systemd/, exactly as written.
fn unit_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One unit under test in its own container.
struct Scenario {
    test: &'static str,
    unit: &'static str,
    c: Container,
}

impl Scenario {
    /// Boots a container with `systemd`, installs the `http` example and the unit `files`;
    /// `None` (after one line saying why) where this machine cannot.
    fn new(
        test: &'static str,
        systemd: Systemd,
        files: &[&str],
        unit: &'static str,
    ) -> Option<Scenario> {
        let c = Container::boot_or_skip(test, systemd)?;
        c.install(&example("http"), "/usr/local/bin/http");
        for f in files {
            c.write(&format!("/etc/systemd/system/{f}"), &unit_file(f));
        }
        let s = Scenario { test, unit, c };
        s.systemctl(&["daemon-reload"]);
        Some(s)
    }

    /// Fails with what systemd knows: the unit's state, its processes and its journal.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n{}: {}\nprocesses in its cgroup: {:?}\njournal -u {}:\n{}",
            self.test,
            self.unit,
            self.c
                .systemctl(&[
                    "show",
                    "-p",
                    "ActiveState,SubState,Result,MainPID,NRestarts",
                    self.unit
                ])
                .unwrap_or_else(|e| e)
                .replace('\n', " "),
            self.c.unit_pids(self.unit),
            self.unit,
            self.c.journal(self.unit, 80)
        );
    }

    fn systemctl(&self, args: &[&str]) -> String {
        self.c.systemctl(args).unwrap_or_else(|e| self.fail(&e))
    }

    fn state(&self) -> UnitState {
        self.c.show(self.unit)
    }

    /// Waits (bounded) until the unit is active/running with a main process other than
    /// `old`, and `GET /` answers from that very process; returns it.
    fn serving(&self, old: Option<i32>) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.state();
            let last =
                if s.state() == "active/running" && s.main_pid != 0 && Some(s.main_pid) != old {
                    match self.c.in_net(|| http_pid_of(addr())) {
                        Ok(pid) if pid == s.main_pid => return pid,
                        Ok(pid) => format!("MainPID={} but pid {pid} answers", s.main_pid),
                        Err(e) => format!("MainPID={} but GET / failed: {e}", s.main_pid),
                    }
                } else {
                    s.to_string()
                };
            if Instant::now() > deadline {
                self.fail(&format!(
                    "not serving from a new main process (old: {old:?}) within {WAIT:?}: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until `main` is the only process of the unit (the previous one has
    /// drained and exited).
    fn alone(&self, main: i32) {
        let deadline = Instant::now() + WAIT;
        while self.c.unit_pids(self.unit) != [main] {
            if Instant::now() > deadline {
                self.fail(&format!("{main} is not alone in the unit within {WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `systemctl start`; waits until it serves; returns the main pid.
    fn start(&self) -> i32 {
        self.systemctl(&["start", self.unit]);
        let main = self.serving(None);
        self.restarts_are(0);
        main
    }

    fn restarts_are(&self, n: u32) {
        let s = self.state();
        if s.n_restarts != n {
            self.fail(&format!("NRestarts={}, expected {n}", s.n_restarts));
        }
    }

    /// Clients inside the container: two keeping their connection alive, two opening a
    /// fresh one for every request.
    fn load(&self) -> NetLoad {
        let load = self.c.http_load(addr(), 2, 2, LOAD_BOUND);
        // Let the clients get going before the step they measure.
        std::thread::sleep(Duration::from_millis(200));
        load
    }

    /// Ends a load phase: 0 failed requests, some answered.
    fn no_failures(&self, step: &str, load: NetLoad) -> HttpReport {
        let r = load.finish();
        if r.failed > 0 || r.ok == 0 {
            self.fail(&format!(
                "{step}: {} requests answered, {} failed, {} retried; first failures: {:#?}",
                r.ok, r.failed, r.retried, r.failures
            ));
        }
        r
    }

    /// `systemctl reload`, then waits (bounded) until a new main process serves and the old
    /// one is gone; returns the new one. The load runs throughout.
    fn reload(&self, step: &str, old: i32) -> (i32, HttpReport) {
        let load = self.load();
        self.systemctl(&["reload", self.unit]);
        let new = self.serving(Some(old));
        self.alone(new);
        self.restarts_are(0);
        (new, self.no_failures(step, load))
    }

    /// `n` reloads under load, each checked; returns the last main pid and the requests done.
    fn reloads(&self, n: usize, mut main: i32) -> (i32, usize) {
        let mut requests = 0;
        for i in 1..=n {
            let (new, r) = self.reload(&format!("reload {i}"), main);
            requests += r.ok;
            main = new;
        }
        (main, requests)
    }

    /// A long request on the main process `old`, then a reload: `old` hands over and drains
    /// it. Returns the request and the new main process.
    fn reload_draining(&self, old: i32) -> (PendingRequest, i32) {
        let on_old = self.slow(2 * SLOW_MS, old);
        self.systemctl(&["reload", self.unit]);
        let main = self.serving(Some(old));
        if !self.c.unit_pids(self.unit).contains(&old) {
            self.fail(&format!("{old} should still be draining its request"));
        }
        (on_old, main)
    }

    /// A `GET /slow` that the (container) process `pid` has accepted.
    fn slow(&self, ms: u64, pid: i32) -> PendingRequest {
        self.c
            .send_accepted_by(addr(), &format!("/slow?ms={ms}"), pid)
    }

    /// The answer of a request in flight came, complete, from `pid`.
    fn answered(&self, what: &str, request: PendingRequest, pid: i32) {
        match request.answer() {
            Ok(body) if parse_pid(&body) == Some(pid) => {}
            Ok(body) => self.fail(&format!("{what}: answered {body:?}, expected pid {pid}")),
            Err(e) => self.fail(&format!("{what}: not answered: {e}")),
        }
    }

    /// Waits (bounded) until the unit is no longer active.
    fn ended(&self) {
        let deadline = Instant::now() + WAIT;
        while !matches!(self.state().active_state.as_str(), "inactive" | "failed") {
            if Instant::now() > deadline {
                self.fail(&format!("still not inactive after {WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stopped cleanly: inactive/dead, Result=success, no main pid, no process left.
    fn stopped_clean(&self) {
        let s = self.state();
        if s.state() != "inactive/dead" || s.result != "success" || s.main_pid != 0 {
            self.fail("expected inactive/dead with Result=success and MainPID=0");
        }
        let left = self.c.unit_pids(self.unit);
        if !left.is_empty() {
            self.fail(&format!("processes left in the unit: {left:?}"));
        }
    }

    /// Starts the socket unit, and the service through it with a first request; returns
    /// the main pid.
    fn activate(&self, socket: &str) -> i32 {
        self.systemctl(&["start", socket]);
        let before = self.state();
        if before.active_state != "inactive" {
            self.fail("the service runs before any connection");
        }
        if let Err(e) = self.c.in_net(|| http_pid_of(addr())) {
            self.fail(&format!("the first request, which starts the service: {e}"));
        }
        let main = self.serving(None);
        self.restarts_are(0);
        main
    }

    /// Still serving from `main` alone, active/running, never restarted.
    fn steady(&self, main: i32) {
        if self.serving(None) != main {
            self.fail(&format!("expected {main} to serve"));
        }
        self.alone(main);
        self.restarts_are(0);
    }
}

/// systemd 252, Type=notify + ExecReload=: every reload moves MainPID to the successor, the
/// unit stays active/running, and not one request fails.
#[test]
fn notify_unit_reloads_under_load_and_systemd_follows_every_successor() {
    let test = "notify_unit_reloads_under_load_and_systemd_follows_every_successor";
    let Some(s) = Scenario::new(
        test,
        Systemd::Host,
        &["http-notify.service"],
        "http-notify.service",
    ) else {
        return;
    };
    let first = s.start();
    let (main, requests) = s.reloads(RELOADS, first);
    s.steady(main);
    eprintln!(
        "{test}: systemd {}, {RELOADS} reloads, {requests} requests, 0 failed",
        s.c.systemd_version()
    );
}

/// systemd 252: `systemctl stop` of a unit that never reloaded lets the request in flight
/// finish, and the unit ends inactive/dead, Result=success.
#[test]
fn stop_before_any_reload_drains_the_request_in_flight() {
    let test = "stop_before_any_reload_drains_the_request_in_flight";
    let Some(s) = Scenario::new(
        test,
        Systemd::Host,
        &["http-notify.service"],
        "http-notify.service",
    ) else {
        return;
    };
    let main = s.start();
    s.no_failures("steady", s.load());
    let slow = s.slow(SLOW_MS, main);
    s.systemctl(&["stop", s.unit]);
    s.answered("the request in flight at the stop", slow, main);
    s.stopped_clean();
}

/// systemd 252: after reloads, `systemctl stop` (the unit has no ExecStop=) lets the
/// request in flight on the current main process finish; the unit ends inactive/dead,
/// Result=success, with no process left.
#[test]
fn stop_after_reloads_drains_the_request_in_flight() {
    let test = "stop_after_reloads_drains_the_request_in_flight";
    let Some(s) = Scenario::new(
        test,
        Systemd::Host,
        &["http-notify.service"],
        "http-notify.service",
    ) else {
        return;
    };
    let first = s.start();
    let (main, _) = s.reloads(FEW_RELOADS, first);
    let slow = s.slow(SLOW_MS, main);
    s.systemctl(&["stop", s.unit]);
    s.answered("the request in flight at the stop", slow, main);
    s.stopped_clean();
}

/// systemd 252: `systemctl stop` while the process a reload replaced still drains a request:
/// systemd sends SIGTERM to every process of the unit (KillMode=control-group), and both
/// that request and the one in flight on the main process are answered; the unit ends
/// inactive/dead, Result=success.
#[test]
fn stop_during_a_drain_answers_both_generations() {
    let test = "stop_during_a_drain_answers_both_generations";
    let Some(s) = Scenario::new(
        test,
        Systemd::Host,
        &["http-notify.service"],
        "http-notify.service",
    ) else {
        return;
    };
    let first = s.start();
    let (old, _) = s.reloads(FEW_RELOADS, first);
    let (on_old, main) = s.reload_draining(old);
    // The main process's request ends first. Once the main process is gone, systemd sends
    // SIGTERM again to what is left of the unit (its final-sigterm step): the process still
    // draining gets a second stop signal unless it is gone by then.
    let on_main = s.slow(SLOW_MS, main);
    s.systemctl(&["stop", s.unit]);
    s.answered("the request on the draining process", on_old, old);
    s.answered("the request on the main process", on_main, main);
    s.stopped_clean();
}

/// systemd 252: `systemctl kill -s TERM` (SIGTERM to every process of the unit) after
/// reloads, while the previous process still drains a request: both that one and the one in
/// flight on the current main process are answered; the unit ends inactive/dead,
/// Result=success.
#[test]
fn kill_term_after_reloads_drains_every_generation() {
    let test = "kill_term_after_reloads_drains_every_generation";
    let Some(s) = Scenario::new(
        test,
        Systemd::Host,
        &["http-notify.service"],
        "http-notify.service",
    ) else {
        return;
    };
    let first = s.start();
    let (old, _) = s.reloads(FEW_RELOADS, first);
    let (on_old, main) = s.reload_draining(old);
    // The main process's request ends first. Once the main process is gone, systemd stops
    // the unit: SIGTERM again to what is left of it, the process still draining, which gets
    // a second stop signal unless it is gone by then.
    let on_main = s.slow(SLOW_MS, main);
    s.systemctl(&["kill", "-s", "TERM", s.unit]);
    s.ended();
    s.answered("the request on the draining process", on_old, old);
    s.answered("the request on the main process", on_main, main);
    s.stopped_clean();
}

/// systemd 252, socket activation: after reloads, `systemctl restart` under load drains the
/// request in flight, starts a new main process on the same socket, and not one request of
/// the load fails (connections wait in the socket's backlog meanwhile).
#[test]
fn restart_after_reloads_drains_and_refuses_nothing() {
    let test = "restart_after_reloads_drains_and_refuses_nothing";
    let files = ["http.socket", "http-activated.service"];
    let Some(s) = Scenario::new(test, Systemd::Host, &files, "http-activated.service") else {
        return;
    };
    let first = s.activate("http.socket");
    let (old, _) = s.reloads(FEW_RELOADS, first);
    let load = s.load();
    let slow = load.paused(|| s.slow(SLOW_MS, old));
    s.systemctl(&["restart", s.unit]);
    let main = s.serving(Some(old));
    s.alone(main);
    s.no_failures("restart", load);
    s.answered("the request in flight at the restart", slow, old);
    s.restarts_are(0);
}

/// systemd 252, socket activation: the socket unit starts the service at the first
/// connection; reloads then hand the activated socket on, MainPID follows, nothing fails.
#[test]
fn socket_activated_unit_starts_on_demand_and_reloads_under_load() {
    let test = "socket_activated_unit_starts_on_demand_and_reloads_under_load";
    let files = ["http.socket", "http-activated.service"];
    let Some(s) = Scenario::new(test, Systemd::Host, &files, "http-activated.service") else {
        return;
    };
    let first = s.activate("http.socket");
    let (main, requests) = s.reloads(FEW_RELOADS, first);
    s.steady(main);
    let socket = s.c.show("http.socket");
    if socket.state() != "active/running" {
        s.fail(&format!("http.socket: {socket}"));
    }
    eprintln!("{test}: {FEW_RELOADS} reloads, {requests} requests, 0 failed");
}

/// systemd 252, Restart=on-failure: `kill -9` of the main process (a successor started by a
/// reload, not systemd's own child) makes systemd start the unit again; connections made
/// meanwhile wait in the activated socket's backlog, and none fails.
#[test]
fn kill_9_of_the_main_process_restarts_the_unit() {
    let test = "kill_9_of_the_main_process_restarts_the_unit";
    let files = ["http.socket", "http-activated.service"];
    let Some(s) = Scenario::new(test, Systemd::Host, &files, "http-activated.service") else {
        return;
    };
    let first = s.activate("http.socket");
    let (old, _) = s.reloads(FEW_RELOADS, first);
    let load = s.load();
    // No request in flight on the process killed: only those would be lost.
    load.paused(|| {
        let out = s.c.exec(&["kill", "-9", &old.to_string()]);
        if !out.status.success() {
            s.fail(&format!("kill -9 {old}: {out:?}"));
        }
    });
    let main = s.serving(Some(old));
    s.alone(main);
    s.no_failures("kill -9 and restart", load);
    s.restarts_are(1);
}

/// The unpacked systemd >= 253, or `None` after one line saying why there is none.
fn newer_systemd(test: &str) -> Option<Systemd> {
    Systemd::newer().map_err(|why| skip(test, &why)).ok()
}

/// Checks the container runs a systemd that knows Type=notify-reload.
fn knows_notify_reload(s: &Scenario) {
    let version = s.c.systemd_version();
    if version < 253 {
        s.fail(&format!("the newer systemd tree booted systemd {version}"));
    }
}

/// systemd 254, Type=notify-reload: `systemctl reload` returns once the successor is ready,
/// with MainPID already on it; the unit stays active/running, no request fails.
#[test]
fn notify_reload_unit_reloads_under_load_on_systemd_254() {
    let test = "notify_reload_unit_reloads_under_load_on_systemd_254";
    let Some(systemd) = newer_systemd(test) else {
        return;
    };
    let unit = "http-notify-reload.service";
    let Some(s) = Scenario::new(test, systemd, &[unit], unit) else {
        return;
    };
    knows_notify_reload(&s);
    let mut main = s.start();
    let mut requests = 0;
    for i in 1..=RELOADS {
        let load = s.load();
        s.systemctl(&["reload", unit]);
        // notify-reload: the reload job ends with READY=1, which comes with MAINPID=.
        let after = s.state();
        if after.state() != "active/running" || after.main_pid == main || after.main_pid == 0 {
            s.fail(&format!(
                "reload {i}: right after `systemctl reload`: {after}"
            ));
        }
        main = s.serving(Some(main));
        if main != after.main_pid {
            s.fail(&format!(
                "reload {i}: {main} answers, MainPID was {}",
                after.main_pid
            ));
        }
        s.alone(main);
        requests += s.no_failures(&format!("reload {i}"), load).ok;
    }
    s.steady(main);
    eprintln!(
        "{test}: systemd {}, {RELOADS} reloads, {requests} requests, 0 failed",
        s.c.systemd_version()
    );
}

/// systemd 254, Type=notify-reload: after reloads, `systemctl stop` lets the request in
/// flight finish; the unit ends inactive/dead, Result=success, with no process left.
#[test]
fn notify_reload_unit_stops_after_reloads_draining_on_systemd_254() {
    let test = "notify_reload_unit_stops_after_reloads_draining_on_systemd_254";
    let Some(systemd) = newer_systemd(test) else {
        return;
    };
    let unit = "http-notify-reload.service";
    let Some(s) = Scenario::new(test, systemd, &[unit], unit) else {
        return;
    };
    knows_notify_reload(&s);
    let first = s.start();
    let (main, _) = s.reloads(FEW_RELOADS, first);
    let slow = s.slow(SLOW_MS, main);
    s.systemctl(&["stop", unit]);
    s.answered("the request in flight at the stop", slow, main);
    s.stopped_clean();
}
