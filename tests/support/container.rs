//! A real systemd as PID 1 of a throwaway container (DESIGN.md sections 6 and 9): only a
//! real systemd shows how it treats the processes it is told about.
//!
//! [`Container::boot`] mounts an overlay of `/` (the host's own Debian, with the project's
//! build in it) with a tmpfs upper layer, so that nothing the container writes reaches the
//! host, and boots it with `systemd-nspawn -b --private-network` (loopback only). The test
//! then works inside the container's namespaces:
//!
//! - [`Container::exec`] / [`Container::systemctl`] run a program there with
//!   `nsenter -t <PID 1> -a` (its filesystem, pids, network and cgroups), bounded by `timeout`;
//! - [`Container::in_net`] runs a closure on a thread that joined the container's network
//!   namespace: every socket it (and every thread it spawns, such as [`HttpLoad`]'s clients)
//!   creates lives there, so `127.0.0.1` is the container's loopback;
//!   [`Container::http_load`] and [`Container::send_accepted_by`] start the shared HTTP
//!   client loop and a request in flight there;
//! - [`Container::install`] / [`Container::write`] put files into the container's root;
//! - [`Container::show`], [`Container::unit_pids`], [`Container::journal`] tell what systemd
//!   thinks of a unit, which processes its cgroup holds, and what it logged.
//!
//! Pids that systemd and the services report are the container's; [`Container::host_pid`]
//! maps one to the host's, for helpers that look at `/proc` (such as
//! [`PendingRequest::send_accepted_by`]).
//!
//! Dropping the container tears everything down, also when the test failed: PID 1 is killed
//! (which ends every process of the container), `systemd-nspawn` is reaped, the overlay and
//! the tmpfs are unmounted, the cgroups and directories made for it are removed. A container
//! belongs to the thread that booted it: should that thread end (or the whole test process
//! be killed) before the container is dropped, the kernel signals nspawn, which then kills
//! the container (only the mounts are left behind then).
//!
//! Each container has its own machine name, directories and cgroups, so tests may boot
//! theirs side by side (libtest's threads, or nextest's processes). Booting takes 1-3 s.
//!
//! ```ignore
//! let Some(c) = Container::boot_or_skip("my-test", Systemd::Host) else { return };
//! c.install(&example("http"), "/usr/local/bin/http");
//! c.write("/etc/systemd/system/http.service", UNIT);
//! c.systemctl(&["daemon-reload"]).unwrap();
//! c.systemctl(&["start", "http.service"]).unwrap();
//! let pid = c.in_net(|| http_pid_of("127.0.0.1:8080".parse().unwrap())).unwrap();
//! assert_eq!(c.show("http.service").main_pid, pid);
//! ```
//!
//! A machine that cannot run it (not root, no `systemd-nspawn`, no overlayfs) gets one line
//! saying so from [`Container::boot_or_skip`], and the test returns; with
//! `TABLEFLIP_REQUIRE_REAL_SYSTEMD=1` in the environment (as `.ci/run` sets) that line is a
//! failure instead, so that CI never skips silently.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{CrashLoad, HttpLoad, HttpReport, PendingRequest, install_file, ppid_of};

/// Where `TABLEFLIP_REQUIRE_REAL_SYSTEMD=1` turns every "cannot run here" into a failure.
pub const REQUIRE_VAR: &str = "TABLEFLIP_REQUIRE_REAL_SYSTEMD";

/// Where a newer systemd (>= 253, for `Type=notify-reload`) is unpacked, unless
/// `TABLEFLIP_NEWER_SYSTEMD` names another directory. `tests/support/fetch-newer-systemd.sh`
/// fills it from Debian's backports; `.ci/run` runs it.
pub const NEWER_SYSTEMD_DEFAULT: &str = "/var/cache/tableflip/newer-systemd";

/// The start of the names of every container's directory and cgroups.
const PREFIX: &str = "tableflip-";

/// The bound on the boot, up to `systemctl is-system-running` saying `running`.
const BOOT_BOUND: Duration = Duration::from_secs(90);

/// The bound on one program run inside the container (`systemctl stop` waits for a drain).
const EXEC_BOUND_SECS: u32 = 90;

/// The target the container boots: sysinit (journald, tmpfiles) and sockets, not the host's
/// timers, getty or enabled services.
const BOOT_TARGET: &str = "tableflip-test.target";

/// Which systemd runs as the container's PID 1.
#[derive(Clone, Debug)]
pub enum Systemd {
    /// The host's (Debian 12: 252).
    Host,
    /// The tree at this path (an unpacked systemd package, `usr/` only) laid over the host's,
    /// as a lower layer of the overlay: the host's installation stays untouched.
    Tree(PathBuf),
}

impl Systemd {
    /// The unpacked systemd >= 253 (see [`NEWER_SYSTEMD_DEFAULT`]), or why there is none.
    pub fn newer() -> Result<Systemd, Unsupported> {
        let dir = std::env::var_os("TABLEFLIP_NEWER_SYSTEMD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(NEWER_SYSTEMD_DEFAULT));
        if dir.join("usr/lib/systemd/systemd").is_file() {
            Ok(Systemd::Tree(dir))
        } else {
            Err(Unsupported(format!(
                "no systemd >= 253 unpacked at {} (Debian 12 ships 252; \
                 tests/support/fetch-newer-systemd.sh fetches 254 from bookworm-backports, \
                 as .ci/run does)",
                dir.display()
            )))
        }
    }
}

/// Why this machine cannot boot a container: one line.
#[derive(Debug)]
pub struct Unsupported(pub String);

/// Says why a test is skipped, in one line (shown even when the harness captures output),
/// and returns; under [`REQUIRE_VAR`] it fails.
pub fn skip(test: &str, why: &Unsupported) {
    if std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1") {
        panic!(
            "{test}: cannot run, and {REQUIRE_VAR}=1 requires it: {}",
            why.0
        );
    }
    // Straight to the stderr descriptor: the test harness captures `eprintln!`, and this
    // line must show in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {}", why.0);
}

/// What `systemctl show` says about a unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    pub main_pid: i32,
    pub n_restarts: u32,
}

impl UnitState {
    /// `active/running`, `inactive/dead`...
    pub fn state(&self) -> String {
        format!("{}/{}", self.active_state, self.sub_state)
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ActiveState={} SubState={} Result={} MainPID={} NRestarts={}",
            self.active_state, self.sub_state, self.result, self.main_pid, self.n_restarts
        )
    }
}

/// A booted container; torn down on drop.
pub struct Container {
    name: String,
    /// The host directory holding everything: `mnt` (the tmpfs: `upper`, `work`, `lower`),
    /// `root` (the overlay), `console.log`.
    base: PathBuf,
    /// `systemd-nspawn`, our child.
    nspawn: Option<Child>,
    /// The container's PID 1, in the host's pid namespace.
    pid1: i32,
    /// Cgroups made for this container (one per hierarchy), removed on drop.
    cgroups: Vec<PathBuf>,
    mounted: Vec<PathBuf>,
}

impl Container {
    /// Boots a container named after `test`, or says in one line why this machine cannot
    /// (see [`skip`]) and returns `None`.
    pub fn boot_or_skip(test: &str, systemd: Systemd) -> Option<Container> {
        match Container::boot(test, systemd) {
            Ok(c) => Some(c),
            Err(why) => {
                skip(test, &why);
                None
            }
        }
    }

    /// Boots a container. `Err` only for what the machine lacks; a container that does not
    /// boot on a machine that has everything is a panic, with nspawn's console output.
    pub fn boot(test: &str, systemd: Systemd) -> Result<Container, Unsupported> {
        preflight()?;
        sweep_stale();
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("tf-{}-{n}", std::process::id());
        let base = std::env::temp_dir().join(format!("{PREFIX}{name}"));
        std::fs::create_dir_all(&base).expect("container base dir");
        let mut c = Container {
            name,
            base,
            nspawn: None,
            pid1: 0,
            cgroups: Vec::new(),
            mounted: Vec::new(),
        };
        c.mount_root(&systemd)?;
        c.write(
            &format!("/etc/systemd/system/{BOOT_TARGET}"),
            &format!(
                "[Unit]\nDescription=tableflip test container ({test})\n\
                 Requires=sysinit.target sockets.target\n\
                 After=sysinit.target sockets.target\nAllowIsolate=yes\n"
            ),
        );
        c.cgroups = own_cgroups(&c.name);
        c.start_nspawn();
        c.wait_booted(test);
        Ok(c)
    }

    /// The container's PID 1, as the host sees it.
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// The container's root directory, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    fn host_path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// Copies a host file into the container (mode 0755), creating its directory.
    pub fn install(&self, src: &Path, dest: &str) {
        let dest = self.host_path(dest);
        std::fs::create_dir_all(dest.parent().unwrap()).expect("create directory in container");
        install_file(src, &dest);
    }

    /// Writes a text file into the container, creating its directory.
    pub fn write(&self, dest: &str, text: &str) {
        let dest = self.host_path(dest);
        std::fs::create_dir_all(dest.parent().unwrap()).expect("create directory in container");
        std::fs::write(&dest, text).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
    }

    /// Runs a program inside every namespace of the container (`nsenter -a`), bounded.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-k", "5", &EXEC_BOUND_SECS.to_string()])
            .args(["nsenter", "-t", &self.pid1.to_string(), "-a", "--"])
            .args(args)
            .stdin(Stdio::null())
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("run nsenter")
    }

    /// Runs `sh -c script` inside the container; its stdout (whatever the exit status).
    pub fn sh(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.exec(&["sh", "-c", script]).stdout).into_owned()
    }

    /// `systemctl ARGS` inside the container: its stdout, or what went wrong.
    pub fn systemctl(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["systemctl", "--no-pager"];
        full.extend_from_slice(args);
        let out = self.exec(&full);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`systemctl {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// The major version of the container's systemd (252 for Debian 12's).
    pub fn systemd_version(&self) -> u32 {
        let out = self.systemctl(&["--version"]).expect("systemctl --version");
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected `systemctl --version`: {out}"))
    }

    /// `systemctl show` of the properties in [`UnitState`].
    pub fn show(&self, unit: &str) -> UnitState {
        let out = self
            .systemctl(&[
                "show",
                "-p",
                "ActiveState,SubState,Result,MainPID,NRestarts",
                unit,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let props: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| props.get(k).copied().unwrap_or_default().to_owned();
        UnitState {
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            result: get("Result"),
            main_pid: get("MainPID").parse().unwrap_or(0),
            n_restarts: get("NRestarts").parse().unwrap_or(0),
        }
    }

    /// The processes in a system unit's cgroup (container pids), sorted; empty when the
    /// cgroup is gone.
    pub fn unit_pids(&self, unit: &str) -> Vec<i32> {
        let cg = format!("/system.slice/{unit}");
        let out = self.sh(&format!(
            "for d in /sys/fs/cgroup/unified{cg} /sys/fs/cgroup{cg}; do \
             if [ -f \"$d/cgroup.procs\" ]; then cat \"$d/cgroup.procs\"; exit 0; fi; done"
        ));
        let mut pids: Vec<i32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pids.sort_unstable();
        pids
    }

    /// The journal of this boot for a unit (systemd's lines about it, and the service's
    /// stderr), the last `lines` lines.
    pub fn journal(&self, unit: &str, lines: usize) -> String {
        let out = self.exec(&[
            "journalctl",
            "-b",
            "-u",
            unit,
            "--no-pager",
            "--no-hostname",
            "-o",
            "short-monotonic",
            "-n",
            &lines.to_string(),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host's pid of a process of the container given by its container pid.
    pub fn host_pid(&self, pid: i32) -> Option<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid1)).ok()?;
        let dir = std::fs::read_dir("/proc").ok()?;
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|host| {
                std::fs::read_to_string(format!("/proc/{host}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|l| l.split_whitespace().last()?.parse::<i32>().ok())
                        == Some(pid)
                }) && std::fs::read_link(format!("/proc/{host}/ns/pid")).ok() == Some(ns.clone())
            })
    }

    /// Runs `f` on a thread that joined the container's network namespace; threads it
    /// spawns are there too (a new thread starts in its creator's namespaces).
    pub fn in_net<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(format!("/proc/{}/ns/net", self.pid1))
            .expect("open the container's network namespace");
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the container's network");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// [`HttpLoad::start`] inside the container's network.
    pub fn http_load(
        &self,
        addr: std::net::SocketAddr,
        keep_alive: usize,
        fresh: usize,
        bound: Duration,
    ) -> NetLoad {
        NetLoad(Some(
            self.in_net(|| HttpLoad::start(addr, keep_alive, fresh, bound)),
        ))
    }

    /// [`PendingRequest::send_accepted_by`] inside the container's network: `pid` is a
    /// container pid.
    pub fn send_accepted_by(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
        pid: i32,
    ) -> PendingRequest {
        let host = self
            .host_pid(pid)
            .unwrap_or_else(|| panic!("no process {pid} in the container"));
        self.in_net(|| PendingRequest::send_accepted_by(addr, path, host))
    }

    /// [`CrashLoad::start`] inside the container's network.
    pub fn crash_load(
        &self,
        addr: std::net::SocketAddr,
        keep_alive: usize,
        fresh: usize,
        bound: Duration,
    ) -> CrashLoad {
        self.in_net(|| CrashLoad::start(addr, keep_alive, fresh, bound))
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.systemctl(&["show", "-p", name, "--value", unit])
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_owned()
    }

    /// The inode of the TCP socket listening on `addr` in the container's network, from its
    /// `/proc/net/tcp` (the same socket has the same inode in every process holding it).
    pub fn listening_inode(&self, addr: std::net::SocketAddr) -> Option<u64> {
        let std::net::SocketAddr::V4(v4) = addr else {
            panic!("listening_inode: IPv4 only, got {addr}");
        };
        // /proc/net/tcp writes the address as the 32-bit number in host byte order, in hex.
        let local = format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        );
        let table = std::fs::read_to_string(format!("/proc/{}/net/tcp", self.pid1)).ok()?;
        table.lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 9 && cols[1] == local && cols[3] == "0A")
                .then(|| cols[9].parse().ok())
                .flatten()
        })
    }

    /// The socket inodes a process of the container (by container pid) holds.
    pub fn socket_inodes_of(&self, pid: i32) -> std::collections::BTreeSet<u64> {
        let host = self
            .host_pid(pid)
            .unwrap_or_else(|| panic!("no process {pid} in the container"));
        super::socket_inodes(host)
            .into_iter()
            .filter_map(|i| i.parse().ok())
            .collect()
    }

    fn mount_root(&mut self, systemd: &Systemd) -> Result<(), Unsupported> {
        let mnt = self.base.join("mnt");
        let root = self.base.join("root");
        std::fs::create_dir_all(&mnt).expect("mnt dir");
        std::fs::create_dir_all(&root).expect("root dir");
        run_checked(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
                .arg(&mnt),
        )
        .map_err(|e| Unsupported(format!("cannot mount a tmpfs: {e}")))?;
        self.mounted.push(mnt.clone());
        for d in ["upper", "work"] {
            std::fs::create_dir(mnt.join(d)).expect("overlay dir");
        }
        // A lower layer must not be inside another one (overlayfs refuses with ELOOP), so a
        // systemd tree is copied onto the tmpfs first.
        let mut lower = String::from("/");
        if let Systemd::Tree(tree) = systemd {
            let copy = mnt.join("lower");
            run_checked(Command::new("cp").arg("-a").arg(tree).arg(&copy))
                .unwrap_or_else(|e| panic!("copy {} into the container: {e}", tree.display()));
            lower = format!("{}:/", copy.display());
        }
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            mnt.join("upper").display(),
            mnt.join("work").display()
        );
        run_checked(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&root),
        )
        .map_err(|e| Unsupported(format!("cannot mount an overlay of /: {e}")))?;
        self.mounted.push(root);
        Ok(())
    }

    fn start_nspawn(&mut self) {
        let log = File::create(self.base.join("console.log")).expect("console log");
        // `--keep-unit` and `--register=no`: nspawn asks no systemd on the host for a scope
        // (the host's PID 1 may be none). It then makes its `payload` and `supervisor`
        // cgroups under its own, so it starts in a cgroup of its own (made by
        // `own_cgroups`): two containers never share one.
        let mut script = String::new();
        for cg in &self.cgroups {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' || exit 1; ",
                cg.display()
            ));
        }
        script.push_str("exec \"$@\"");
        // Should this test process die without dropping the container, nspawn gets SIGTERM
        // (`--pdeathsig`) and then kills the container's PID 1 (`--kill-signal`).
        let child = Command::new("sh")
            .args(["-c", &script, "sh", "setpriv", "--pdeathsig", "TERM"])
            .args(["systemd-nspawn", "--quiet", "--kill-signal=SIGKILL", "-D"])
            .arg(self.root())
            .args([
                "-b",
                "--private-network",
                "--register=no",
                "--keep-unit",
                "-M",
            ])
            .arg(&self.name)
            .args(["--", &format!("systemd.unit={BOOT_TARGET}")])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup console log"))
            .stderr(log)
            .spawn()
            .expect("spawn systemd-nspawn");
        self.nspawn = Some(child);
    }

    fn console(&self) -> String {
        let log = std::fs::read_to_string(self.base.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn nspawn_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.nspawn
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_booted(&mut self, test: &str) {
        let nspawn = self.nspawn.as_ref().unwrap().id() as i32;
        let deadline = Instant::now() + BOOT_BOUND;
        let mut last = String::new();
        loop {
            if let Some(status) = self.nspawn_exited() {
                panic!(
                    "{test}: systemd-nspawn exited ({status}) before the container booted:\n{}",
                    self.console()
                );
            }
            if self.pid1 == 0 {
                self.pid1 = find_pid1(nspawn).unwrap_or(0);
            }
            if self.pid1 != 0 {
                let out = self.exec(&["systemctl", "is-system-running"]);
                last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                match last.as_str() {
                    "running" => return,
                    "degraded" => {
                        let failed = self.systemctl(&["--failed", "--plain"]).unwrap_or_default();
                        eprintln!("{test}: the container booted degraded:\n{failed}");
                        return;
                    }
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "{test}: the container did not boot within {BOOT_BOUND:?} (PID 1: {}, \
                 is-system-running: {last:?}); console:\n{}",
                self.pid1,
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing PID 1 ends every process of its pid namespace. Only while it is still
        // nspawn's child: then the pid is surely the container's.
        if let Some(mut nspawn) = self.nspawn.take() {
            if self.pid1 != 0 && ppid_of(self.pid1) == Some(nspawn.id() as i32) {
                let _ = kill(Pid::from_raw(self.pid1), Signal::SIGKILL);
                // nspawn sees its container end, cleans up after it and exits.
                let deadline = Instant::now() + Duration::from_secs(15);
                while nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
        // Unmount (overlay first), retrying while the last processes go; detach as a last
        // resort. Directories are removed one by one, never recursively: nothing here may
        // ever reach through a mount still in place.
        let mut all_unmounted = true;
        for m in self.mounted.drain(..).rev() {
            all_unmounted &= unmount(&m);
        }
        for cg in self.cgroups.drain(..) {
            remove_cgroup(&cg);
        }
        if all_unmounted {
            let _ = std::fs::remove_file(self.base.join("console.log"));
            for d in ["root", "mnt", ""] {
                let _ = std::fs::remove_dir(self.base.join(d));
            }
        } else {
            eprintln!(
                "container {}: left {} mounted",
                self.name,
                self.base.display()
            );
        }
    }
}

/// An [`HttpLoad`] inside a container's network that also stops its clients when dropped
/// unfinished (a test that failed meanwhile), rather than letting them hammer a torn-down
/// container until their bound.
pub struct NetLoad(Option<HttpLoad>);

impl NetLoad {
    /// [`HttpLoad::paused`].
    pub fn paused<T>(&self, f: impl FnOnce() -> T) -> T {
        self.0.as_ref().expect("running load").paused(f)
    }

    /// [`HttpLoad::finish`].
    pub fn finish(mut self) -> HttpReport {
        self.0.take().expect("running load").finish()
    }
}

impl Drop for NetLoad {
    fn drop(&mut self) {
        if let Some(load) = self.0.take() {
            load.finish();
        }
    }
}

/// What the machine must have: root, `systemd-nspawn`, `nsenter`, overlayfs.
fn preflight() -> Result<(), Unsupported> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Unsupported(
            "needs root (mounts, systemd-nspawn, nsenter)".into(),
        ));
    }
    for tool in ["systemd-nspawn", "nsenter", "setpriv", "timeout", "mount"] {
        if !on_path(tool) {
            return Err(Unsupported(format!(
                "no `{tool}` on PATH (Debian: apt-get install systemd-container util-linux coreutils)"
            )));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Err(Unsupported("the kernel has no overlayfs".into()));
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn run_checked(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The container's PID 1: the child of nspawn that is PID 1 of its own pid namespace and
/// has become systemd.
fn find_pid1(nspawn: i32) -> Option<i32> {
    super::children_of(nspawn).into_iter().find(|&pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let is_init = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|l| {
                l.split_whitespace().count() > 1 && l.split_whitespace().last() == Some("1")
            });
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        is_init && comm.trim() == "systemd"
    })
}

/// A new cgroup, child of this process's own, in each hierarchy nspawn uses (the unified one
/// and the named `systemd` one), for one container's nspawn to start in. Hierarchies where
/// that cannot be made are left out (nspawn then uses its own cgroup there).
fn own_cgroups(name: &str) -> Vec<PathBuf> {
    cgroup_parents()
        .into_iter()
        .map(|parent| parent.join(format!("{PREFIX}{name}")))
        .filter(|dir| std::fs::create_dir(dir).is_ok())
        .collect()
}

/// This process's own cgroup in each hierarchy nspawn uses.
fn cgroup_parents() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        let mut fields = right.split_whitespace();
        let (fstype, options) = (fields.next(), fields.nth(1).unwrap_or_default());
        // The line of /proc/self/cgroup for that hierarchy starts with this.
        let key = match fstype {
            Some("cgroup2") => "0::".to_owned(),
            Some("cgroup") if options.split(',').any(|o| o == "name=systemd") => {
                let Some(l) = own.lines().find(|l| l.contains(":name=systemd:")) else {
                    continue;
                };
                format!("{}:", l.rsplit_once(':').unwrap().0)
            }
            _ => continue,
        };
        if let Some(path) = own.lines().find_map(|l| l.strip_prefix(key.as_str())) {
            out.push(Path::new(mount_point).join(path.trim_start_matches('/')));
        }
    }
    out
}

/// Removes what containers of test processes that died without dropping them (killed by a
/// timeout, say) left behind: their mounts, directories and cgroups. Once per test process;
/// only for test processes that are gone.
fn sweep_stale() {
    static SWEPT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    SWEPT.get_or_init(|| {
        // `tableflip-tf-<pid>-<n>`, of a pid that no longer runs.
        let stale = |name: &str| {
            name.strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_prefix("tf-"))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, n)| Some((pid.parse::<i32>().ok()?, n.parse::<u32>().ok()?)))
                .is_some_and(|(pid, _)| !Path::new(&format!("/proc/{pid}")).exists())
        };
        let entries = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_str().is_some_and(stale))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default()
        };
        for base in entries(&std::env::temp_dir()) {
            // Never a recursive removal: a directory still mounted is not empty, and stays.
            for m in ["root", "mnt"] {
                let _ = run_checked(Command::new("umount").arg(base.join(m)));
            }
            let _ = std::fs::remove_file(base.join("console.log"));
            for d in ["root", "mnt", ""] {
                let _ = std::fs::remove_dir(base.join(d));
            }
        }
        for parent in cgroup_parents() {
            for cg in entries(&parent) {
                remove_cgroup_once(&cg);
            }
        }
    });
}

/// Removes a cgroup and every cgroup below it, retrying while their processes go.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if remove_cgroup_once(dir) || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn remove_cgroup_once(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_once(&e.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

/// Unmounts `path`, retrying a little while it is busy, then detaching it.
fn unmount(path: &Path) -> bool {
    for _ in 0..50 {
        if run_checked(Command::new("umount").arg(path)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    run_checked(Command::new("umount").arg("-l").arg(path)).is_ok()
}
