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

// -------------------------------------------------------------------------------------------
// systemd's fd store (examples/systemd/http-fdstore.service, http-fdstore-preserve.service):
// the listening socket outlives the processes of the unit.
// -------------------------------------------------------------------------------------------

/// The unit that keeps its socket in the fd store on systemd 252.
const FDSTORE_UNIT: &str = "http-fdstore.service";

impl Scenario {
    /// The inode of the socket listening on [`ADDR`], and that `main` holds it.
    fn listening_socket(&self, main: i32) -> u64 {
        let Some(inode) = self.c.listening_inode(addr()) else {
            self.fail(&format!("nothing listens on {ADDR}"));
        };
        if !self.c.socket_inodes_of(main).contains(&inode) {
            self.fail(&format!(
                "the main process {main} does not hold the listening socket {inode}"
            ));
        }
        inode
    }

    /// How many descriptors systemd holds in the unit's fd store.
    fn stored(&self) -> u32 {
        let n = self.c.property(self.unit, "NFileDescriptorStore");
        n.parse()
            .unwrap_or_else(|_| self.fail(&format!("NFileDescriptorStore={n:?}")))
    }

    fn stored_is(&self, when: &str, n: u32) {
        let got = self.stored();
        if got != n {
            self.fail(&format!(
                "{when}: {got} descriptors in the fd store, expected {n}"
            ));
        }
    }

    /// Clients that tell refused connections from requests lost in flight.
    fn crash_load(&self) -> CrashLoad {
        let load = self.c.crash_load(addr(), 2, 2, LOAD_BOUND);
        std::thread::sleep(Duration::from_millis(200));
        load
    }

    /// Ends a crash load phase: nothing refused, at most one request lost per client (the
    /// one each had in flight on the process that died), some answered.
    fn nothing_refused(&self, step: &str, load: CrashLoad) -> CrashReport {
        let clients = load.clients();
        let r = load.finish();
        if r.refused > 0 || r.lost > clients || r.ok == 0 {
            self.fail(&format!(
                "{step}: {} answered, {} refused, {} lost in flight (at most {clients}), {} \
                 retried; first failures: {:#?}",
                r.ok, r.refused, r.lost, r.retried, r.failures
            ));
        }
        r
    }
}

/// systemd 252, FileDescriptorStoreMax= and Restart=always: reloads add nothing to the store
/// (one socket, stored once); `kill -9` of the main process under load refuses no connection
/// (they wait in the backlog of the socket systemd holds), loses only requests in flight on
/// the killed process, and the process systemd starts serves on the very same socket.
#[test]
fn fd_store_kill_9_under_load_refuses_nothing_and_keeps_the_socket() {
    let test = "fd_store_kill_9_under_load_refuses_nothing_and_keeps_the_socket";
    let Some(s) = Scenario::new(test, Systemd::Host, &[FDSTORE_UNIT], FDSTORE_UNIT) else {
        return;
    };
    let first = s.start();
    let inode = s.listening_socket(first);
    s.stored_is("after the start", 1);
    let (old, _) = s.reloads(FEW_RELOADS, first);
    s.stored_is("after reloads", 1);
    let mut requests = 0;
    let mut lost = 0;
    let mut main = old;
    for round in 1..=2 {
        let load = s.crash_load();
        let out = s.c.exec(&["kill", "-9", &main.to_string()]);
        if !out.status.success() {
            s.fail(&format!("kill -9 {main}: {out:?}"));
        }
        let new = s.serving(Some(main));
        s.alone(new);
        let r = s.nothing_refused(&format!("kill -9, round {round}"), load);
        requests += r.ok;
        lost += r.lost;
        if s.listening_socket(new) != inode {
            s.fail("a new listening socket after kill -9");
        }
        s.restarts_are(round);
        s.stored_is(&format!("after kill -9 round {round}"), 1);
        main = new;
    }
    eprintln!(
        "{test}: systemd {}, {FEW_RELOADS} reloads, 2 x kill -9 under load: {requests} \
         requests, 0 refused, {lost} lost in flight, socket inode {inode} throughout",
        s.c.systemd_version()
    );
}

/// systemd 252: after reloads, `systemctl restart` under load drains the request in flight,
/// refuses no connection, and the new process serves on the same socket, which it passes on
/// at its own reloads; the store holds that one socket throughout.
#[test]
fn fd_store_restart_under_load_refuses_nothing_and_keeps_the_socket() {
    let test = "fd_store_restart_under_load_refuses_nothing_and_keeps_the_socket";
    let Some(s) = Scenario::new(test, Systemd::Host, &[FDSTORE_UNIT], FDSTORE_UNIT) else {
        return;
    };
    let first = s.start();
    let inode = s.listening_socket(first);
    let (old, _) = s.reloads(FEW_RELOADS, first);
    s.stored_is("after reloads", 1);
    if s.listening_socket(old) != inode {
        s.fail("a new listening socket after reloads");
    }
    let load = s.load();
    let slow = load.paused(|| s.slow(SLOW_MS, old));
    s.systemctl(&["restart", s.unit]);
    let main = s.serving(Some(old));
    s.alone(main);
    let r = s.no_failures("restart", load);
    s.answered("the request in flight at the restart", slow, old);
    if s.listening_socket(main) != inode {
        s.fail("a new listening socket after the restart");
    }
    s.stored_is("after the restart", 1);
    let (last, _) = s.reloads(FEW_RELOADS, main);
    if s.listening_socket(last) != inode {
        s.fail("a new listening socket after the reloads that followed the restart");
    }
    s.stored_is("after the reloads that followed the restart", 1);
    eprintln!(
        "{test}: systemd {}, {FEW_RELOADS} reloads, restart under load ({} requests, 0 \
         failed), {FEW_RELOADS} reloads, socket inode {inode} throughout",
        s.c.systemd_version(),
        r.ok
    );
}

/// systemd 254, FileDescriptorStorePreserve=yes ($FDSTORE set by systemd itself): after
/// `systemctl stop` the socket still listens in systemd's store; a request sent while the
/// unit is stopped waits in its backlog and is answered by the process `systemctl start`
/// starts, on the same socket.
#[test]
fn fd_store_preserve_keeps_the_socket_across_stop_and_start_on_systemd_254() {
    let test = "fd_store_preserve_keeps_the_socket_across_stop_and_start_on_systemd_254";
    let Some(systemd) = newer_systemd(test) else {
        return;
    };
    let unit = "http-fdstore-preserve.service";
    let Some(s) = Scenario::new(test, systemd, &[unit], unit) else {
        return;
    };
    knows_notify_reload(&s);
    // systemd keeps a preserved store as long as the unit is loaded; a stopped unit that
    // nothing references is garbage-collected, its store with it. On a real system the
    // unit is enabled, and the active multi-user.target references it; this container boots
    // a target of its own, so an active target that wants the unit stands in.
    s.c.write(
        "/etc/systemd/system/tf-hold.target",
        &format!("[Unit]\nDescription=holds {unit} loaded\nWants={unit}\n"),
    );
    s.systemctl(&["daemon-reload"]);
    s.systemctl(&["start", "tf-hold.target"]);
    let first = s.start();
    let inode = s.listening_socket(first);
    s.stored_is("after the start", 1);
    let (old, _) = s.reloads(FEW_RELOADS, first);
    s.stored_is("after reloads", 1);
    s.systemctl(&["stop", unit]);
    // Stopped, its store kept: systemd says so with the substate dead-resources-pinned.
    let stopped = s.state();
    if stopped.state() != "inactive/dead-resources-pinned" || stopped.result != "success" {
        s.fail("expected inactive/dead-resources-pinned with Result=success");
    }
    if !s.c.unit_pids(unit).is_empty() {
        s.fail("processes left in the stopped unit");
    }
    s.stored_is("while stopped", 1);
    if s.c.listening_inode(addr()) != Some(inode) {
        s.fail("the socket does not listen while the unit is stopped");
    }
    let waiting = s.c.in_net(|| PendingRequest::send(addr(), "/"));
    s.systemctl(&["start", unit]);
    let main = s.serving(Some(old));
    match waiting.answer() {
        Ok(body) if parse_pid(&body) == Some(main) => {}
        other => s.fail(&format!(
            "the request sent while stopped: {other:?}, expected an answer from {main}"
        )),
    }
    if s.listening_socket(main) != inode {
        s.fail("a new listening socket after stop/start");
    }
    s.no_failures("after stop/start", s.load());
    let (last, _) = s.reloads(FEW_RELOADS, main);
    if s.listening_socket(last) != inode {
        s.fail("a new listening socket after the reloads that followed stop/start");
    }
    s.stored_is("after the reloads that followed stop/start", 1);
    eprintln!(
        "{test}: systemd {}, {FEW_RELOADS} reloads, stop/start with the socket kept (inode \
         {inode}), {FEW_RELOADS} reloads; the request sent while stopped was answered by {main}",
        s.c.systemd_version()
    );
}

/// The control for the fd store tests: the same unit with `TABLEFLIP_FDSTORE=0` (a drop-in)
/// keeps nothing in the store, and `kill -9` under load refuses connections until the new
/// process has bound the address again. This is what the fd store prevents, and it shows
/// that the crash load does see refusals.
#[test]
fn without_the_fd_store_kill_9_under_load_refuses_connections() {
    let test = "without_the_fd_store_kill_9_under_load_refuses_connections";
    let Some(s) = Scenario::new(test, Systemd::Host, &[FDSTORE_UNIT], FDSTORE_UNIT) else {
        return;
    };
    s.c.write(
        &format!("/etc/systemd/system/{FDSTORE_UNIT}.d/opt-out.conf"),
        "[Service]\nEnvironment=TABLEFLIP_FDSTORE=0\n",
    );
    s.systemctl(&["daemon-reload"]);
    let old = s.start();
    let inode = s.listening_socket(old);
    s.stored_is("after the start", 0);
    let load = s.crash_load();
    let out = s.c.exec(&["kill", "-9", &old.to_string()]);
    if !out.status.success() {
        s.fail(&format!("kill -9 {old}: {out:?}"));
    }
    let main = s.serving(Some(old));
    let r = load.finish();
    if r.refused == 0 {
        s.fail(&format!(
            "expected refused connections without the fd store, got none ({} answered)",
            r.ok
        ));
    }
    if s.listening_socket(main) == inode {
        s.fail("the same socket without the fd store?");
    }
    eprintln!(
        "{test}: {} answered, {} refused, {} lost in flight: what the fd store prevents",
        r.ok, r.refused, r.lost
    );
}

// -------------------------------------------------------------------------------------------
// The rest of the notify protocol: STATUS= lines, WATCHDOG=1, EXTEND_TIMEOUT_USEC=
// (examples/systemd/http-watchdog.service, http-warmup.service).
// -------------------------------------------------------------------------------------------

impl Scenario {
    /// What `systemctl show -p StatusText` says.
    fn status_text(&self) -> String {
        self.c.property(self.unit, "StatusText")
    }

    /// Waits (bounded) until the status line satisfies `ok`; returns it.
    fn status_becomes(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status_text();
            if ok(&status) {
                return status;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "StatusText is not {what} within {WAIT:?}: {status:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// systemd 252: `systemctl status` tells a person what the service does: `serving (pid N)`;
/// during a reload whose successor warms up (2 s), `upgrading to pid M`; then `serving (pid
/// M)`, set by the handover; after an upgrade that fails, `upgrade failed: <why>` while the
/// old process serves on; during a stop, `stopping: draining N connections`.
#[test]
fn status_lines_show_in_systemctl_status() {
    let test = "status_lines_show_in_systemctl_status";
    let unit = "http-notify.service";
    let Some(s) = Scenario::new(test, Systemd::Host, &[unit], unit) else {
        return;
    };
    s.c.write(
        &format!("/etc/systemd/system/{unit}.d/warmup.conf"),
        "[Service]\nEnvironment=WARMUP_MS=2000\n",
    );
    s.systemctl(&["daemon-reload"]);
    let first = s.start();
    s.status_becomes("serving", |t| t == format!("serving (pid {first})"));
    let shown = s.systemctl(&["status", "--no-pager", unit]);
    if !shown.contains(&format!("Status: \"serving (pid {first})\"")) {
        s.fail(&format!(
            "systemctl status does not show the status line:\n{shown}"
        ));
    }

    // `systemctl reload` returns once the reload is over (systemd waits for READY=1 after
    // RELOADING=1): watch the status meanwhile.
    s.systemctl(&["reload", "--no-block", unit]);
    let upgrading = s.status_becomes("upgrading to pid N", |t| t.starts_with("upgrading to pid "));
    let main = s.serving(Some(first));
    if !upgrading.starts_with(&format!("upgrading to pid {main}: ")) {
        s.fail(&format!("{upgrading:?} does not name the successor {main}"));
    }
    s.status_becomes("serving by the successor", |t| {
        t == format!("serving (pid {main})")
    });
    s.alone(main);

    // A new version that can't start: the upgrade fails, the old process serves on.
    let out = s.c.exec(&[
        "sh",
        "-c",
        "cp /usr/local/bin/http /usr/local/bin/http.good && \
         printf '#!/bin/sh\\necho broken build >&2\\nexit 3\\n' > /usr/local/bin/http.new && \
         chmod 755 /usr/local/bin/http.new && mv /usr/local/bin/http.new /usr/local/bin/http",
    ]);
    if !out.status.success() {
        s.fail(&format!("install a broken build: {out:?}"));
    }
    s.systemctl(&["reload", unit]);
    let failed = s.status_becomes("upgrade failed", |t| t.starts_with("upgrade failed: "));
    if !failed.contains("exit") {
        s.fail(&format!("{failed:?} does not say why"));
    }
    s.steady(main);

    let slow = s.slow(SLOW_MS, main);
    s.systemctl(&["stop", "--no-block", unit]);
    let draining = s.status_becomes("stopping: draining", |t| {
        t.starts_with("stopping: draining ")
    });
    s.answered("the request in flight at the stop", slow, main);
    s.ended();
    s.stopped_clean();
    eprintln!(
        "{test}: systemd {}: \"serving (pid {first})\", {upgrading:?}, \"serving (pid \
         {main})\", {failed:?}, {draining:?}",
        s.c.systemd_version()
    );
}

/// systemd 252, WatchdogSec=2: the unit stays up across reloads under load and well past
/// the watchdog interval (the successor pings; nothing is restarted); a runtime wedged by
/// SIGUSR1 (every worker thread blocked) stops pinging and systemd restarts it
/// (`Watchdog timeout`); so does a failing health check (SIGUSR2).
#[test]
fn watchdog_unit_survives_reloads_and_restarts_a_wedged_runtime() {
    let test = "watchdog_unit_survives_reloads_and_restarts_a_wedged_runtime";
    let unit = "http-watchdog.service";
    let Some(s) = Scenario::new(test, Systemd::Host, &[unit], unit) else {
        return;
    };
    s.c.install(&example("watchdog"), "/usr/local/bin/watchdog");
    let first = s.start();
    let (main, requests) = s.reloads(FEW_RELOADS, first);
    // Three watchdog intervals with nothing to do: still the same process.
    std::thread::sleep(Duration::from_secs(6));
    s.steady(main);

    let mut main = main;
    for (round, (sig, why)) in [("USR1", "wedged runtime"), ("USR2", "failing health check")]
        .into_iter()
        .enumerate()
    {
        s.systemctl(&["kill", "-s", sig, "--kill-who=main", unit]);
        let new = s.serving(Some(main));
        s.restarts_are(round as u32 + 1);
        let journal = s.c.journal(unit, 200);
        let timeouts = journal.matches("Watchdog timeout").count();
        if timeouts != round + 1 {
            s.fail(&format!(
                "{why}: {timeouts} watchdog timeouts in the journal, expected {}",
                round + 1
            ));
        }
        main = new;
    }
    eprintln!(
        "{test}: systemd {}, {FEW_RELOADS} reloads ({requests} requests, 0 failed), no \
         restart over 3 intervals; restarted by the watchdog after a wedged runtime and \
         after a failing health check",
        s.c.systemd_version()
    );
}

/// A start and a reload whose warm-up (6 s) is longer than `TimeoutStartSec=3` succeed
/// (EXTEND_TIMEOUT_USEC= while warming up), under load, with `Result=success`, nothing timed
/// out and no restart.
fn slow_warmup_succeeds(s: &Scenario, test: &str) {
    let started = Instant::now();
    let first = s.start();
    let start_took = started.elapsed();
    let reloaded = Instant::now();
    let (main, r) = s.reload("reload with a 6 s warm-up", first);
    let reload_took = reloaded.elapsed();
    if s.state().result != "success" {
        s.fail("expected Result=success");
    }
    let journal = s.c.journal(s.unit, 200);
    if journal.contains("timed out") {
        s.fail("systemd timed something out");
    }
    s.steady(main);
    eprintln!(
        "{test}: systemd {}, TimeoutStartSec=3, WARMUP_MS=6000: start {:.1} s, reload {:.1} s \
         under load ({} requests, 0 failed)",
        s.c.systemd_version(),
        start_took.as_secs_f64(),
        reload_took.as_secs_f64(),
        r.ok
    );
}

/// systemd 254, Type=notify-reload (`systemctl reload` waits for the successor): a 6 s
/// warm-up under TimeoutStartSec=3. With `TABLEFLIP_MAINPIDFD=1`, which systemd 254 does not
/// know (255 does), systemd still follows the successor by `MAINPID=`.
#[test]
fn a_slow_warmup_succeeds_under_a_short_start_timeout_on_systemd_254() {
    let test = "a_slow_warmup_succeeds_under_a_short_start_timeout_on_systemd_254";
    let Some(systemd) = newer_systemd(test) else {
        return;
    };
    let unit = "http-warmup.service";
    let Some(s) = Scenario::new(test, systemd, &[unit], unit) else {
        return;
    };
    knows_notify_reload(&s);
    s.c.write(
        &format!("/etc/systemd/system/{unit}.d/pidfd.conf"),
        "[Service]\nEnvironment=TABLEFLIP_MAINPIDFD=1\n",
    );
    s.systemctl(&["daemon-reload"]);
    slow_warmup_succeeds(&s, test);
}

/// systemd 252, Type=notify + ExecReload= (`systemctl reload` also waits for `READY=1`
/// after `RELOADING=1`): the same 6 s warm-up under TimeoutStartSec=3, by a drop-in.
#[test]
fn a_slow_warmup_succeeds_under_a_short_start_timeout_on_systemd_252() {
    let test = "a_slow_warmup_succeeds_under_a_short_start_timeout_on_systemd_252";
    let unit = "http-notify.service";
    let Some(s) = Scenario::new(test, Systemd::Host, &[unit], unit) else {
        return;
    };
    s.c.write(
        &format!("/etc/systemd/system/{unit}.d/warmup.conf"),
        "[Service]\nEnvironment=WARMUP_MS=6000\nTimeoutStartSec=3\n",
    );
    s.systemctl(&["daemon-reload"]);
    slow_warmup_succeeds(&s, test);
}
