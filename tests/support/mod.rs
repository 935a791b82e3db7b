//! Shared by the end-to-end tests: build and start the examples as real processes, drive
//! them from outside on loopback, and kill and reap every generation, also on failure.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

mod container;
pub mod go;
mod http_clients;
#[allow(unused_imports)]
pub use container::*;
#[allow(unused_imports)]
pub use http_clients::*;
mod crash;
#[allow(unused_imports)]
pub use crash::*;
mod notify;
#[allow(unused_imports)]
pub use notify::*;
mod pidns;
#[allow(unused_imports)]
pub use pidns::*;

/// The bound on every single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of a built example; builds the examples once per test process.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        // The variables cargo sets for this test process would, seen by the nested build,
        // make it rerun every build script that watches them (ring's does) and rebuild
        // from there, here and again at the next `cargo test`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") {
                cargo.env_remove(&*name);
            }
        }
        let status = cargo
            .args(["build", "--quiet", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
        .join(name)
}

/// Makes this test process the reaper of orphaned generations (DESIGN.md section 9).
pub fn subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A loopback port that was free a moment ago.
///
/// Never the same port twice in one test process: the kernel may hand a just-released port
/// to the next `bind(:0)`, and two tests running side by side would then start their
/// services on one port (the second one's greetings coming from the first's process).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no fresh loopback port in 1000 tries");
}

/// A fresh scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tf-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    /// Removes the directory, unless the test failed: then its logs are kept for a look, and
    /// where they are is printed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's files in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service started from an example binary. Every pid it learns about is killed and reaped
/// on drop.
pub struct Service {
    first: Child,
    pids: Arc<Mutex<BTreeSet<i32>>>,
    pub stderr_path: PathBuf,
}

impl Service {
    pub fn start(exe: &Path, scratch: &Scratch, envs: &[(&str, &str)]) -> Service {
        subreaper();
        let stderr_path = scratch.path(&format!("stderr-{}", free_port()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(exe);
        cmd.envs(envs.iter().copied())
            .current_dir(&scratch.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let first = spawn_retrying_busy(&mut cmd);
        let pids = Arc::new(Mutex::new(BTreeSet::from([first.id() as i32])));
        Service {
            first,
            pids,
            stderr_path,
        }
    }

    /// Starts `cmd` as a service (for wrappers such as `systemd-socket-activate`): stdin and
    /// stdout are null, stderr goes to a file, the working directory is `scratch`.
    pub fn spawn(mut cmd: Command, scratch: &Scratch) -> Service {
        subreaper();
        let stderr_path = scratch.path(&format!("stderr-{}", free_port()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let first = cmd
            .current_dir(&scratch.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn service");
        let pids = Arc::new(Mutex::new(BTreeSet::from([first.id() as i32])));
        Service {
            first,
            pids,
            stderr_path,
        }
    }

    pub fn first_pid(&self) -> i32 {
        self.first.id() as i32
    }

    /// Remembers a pid so that drop kills it.
    pub fn track(&self, pid: i32) {
        self.pids.lock().unwrap().insert(pid);
    }

    pub fn tracker(&self) -> Arc<Mutex<BTreeSet<i32>>> {
        self.pids.clone()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (bounded) for the first process to exit; returns its exit code.
    pub fn wait_first_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.first.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.first.kill();
        let _ = self.first.wait();
        // Only pids that are still this test's descendants: one reaped elsewhere may have
        // been handed by the kernel to some other process on the machine since.
        let pids: Vec<i32> = self
            .pids
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|&pid| is_descendant(pid))
            .collect();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &pids {
            wait_reaped(pid, Duration::from_secs(5));
        }
    }
}

/// Is `pid` a process (a zombie included) that this test process started, directly or
/// through the generations it started? (The test is their subreaper: orphans come back to it.)
pub fn is_descendant(pid: i32) -> bool {
    let me = std::process::id() as i32;
    let mut at = pid;
    for _ in 0..64 {
        match ppid_of(at) {
            Some(p) if p == me => return true,
            Some(p) if p > 1 => at = p,
            _ => return false,
        }
    }
    false
}

/// Spawns, retrying while the executable is busy (`ETXTBSY`): a binary the test has just
/// copied can still be open for writing in a process another test thread forked meanwhile.
pub fn spawn_retrying_busy(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.expect("spawn example"),
        }
    }
    panic!("executable still busy after 100 attempts");
}

/// Sends a signal.
pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).expect("kill");
}

/// Reaps `pid` if it is (or became) our child; waits at most `bound` for it to exit.
/// Returns its exit code if we reaped it.
pub fn wait_reaped(pid: i32, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(128 + sig as i32),
            Ok(_) => {}
            // Not our child (yet): its parent may still be alive and will reap it.
            Err(_) if is_gone(pid) => return None,
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Is `pid` gone (neither running nor a zombie)?
pub fn is_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_err()
}

/// Is `pid` a zombie?
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits (bounded) until `f` holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects once and reads the hello line; returns the pid in it.
pub fn hello(addr: SocketAddr) -> std::io::Result<i32> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line)?;
    parse_pid(&line).ok_or_else(|| std::io::Error::other(format!("unexpected answer {line:?}")))
}

/// The number after "pid" in a line such as `hello from pid 1234`.
pub fn parse_pid(line: &str) -> Option<i32> {
    line.split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
}

/// Waits (bounded) until the service at `addr` answers from a pid other than `old`.
pub fn wait_new_pid(addr: SocketAddr, old: i32) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(pid) = hello(addr)
            && pid != old
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new pid answered at {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Counts what a client loop saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    pub errors: Vec<String>,
    pub pids: BTreeSet<i32>,
}

/// A client loop: connects, reads the hello line, closes, again — until stopped, at most
/// `max` times or `bound` long.
pub struct Load {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    handles: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize, max: usize, bound: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let handles = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let paused = paused.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + bound;
                    let mut r = LoadReport::default();
                    for _ in 0..max {
                        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                            break;
                        }
                        if paused.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        match hello(addr) {
                            Ok(pid) => {
                                r.ok += 1;
                                r.pids.insert(pid);
                            }
                            Err(e) => {
                                r.failed += 1;
                                if r.errors.len() < 10 {
                                    r.errors.push(e.to_string());
                                }
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        Load {
            stop,
            paused,
            handles,
        }
    }

    /// Runs `f` while no client is connecting (the loop is paused, in-flight ones done).
    pub fn paused<T>(&self, f: impl FnOnce() -> T) -> T {
        self.paused.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        let out = f();
        self.paused.store(false, Ordering::Relaxed);
        out
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadReport::default();
        for h in self.handles {
            let r = h.join().expect("load thread");
            total.ok += r.ok;
            total.failed += r.failed;
            total.errors.extend(r.errors);
            total.pids.extend(r.pids);
        }
        total
    }
}

/// Open descriptors of a process, with what they point to.
pub fn fds_of(pid: i32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("{}->{}", e.file_name().to_string_lossy(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads a whole stream (for tests that want every byte).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

// ---------------------------------------------------------------------------------------------
// Reliability suite (soak, chaos, bad input, hygiene): process bookkeeping, binary swaps,
// descriptor accounting and an HTTP client loop that tells the keep-alive race apart.
// ---------------------------------------------------------------------------------------------

/// The environment variable that marks every process of one test: generations inherit it,
/// so a scan of `/proc/*/environ` finds every process the test caused, strays included.
pub const TAG_VAR: &str = "TF_TEST_TAG";

/// A tag unique to this test process and call, for [`TAG_VAR`].
pub fn unique_tag(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every live (not zombie) process whose initial environment holds `TAG_VAR=tag`.
pub fn tagged_pids(tag: &str) -> BTreeSet<i32> {
    let needle = format!("{TAG_VAR}={tag}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
                && !is_zombie(*pid)
        })
        .collect()
}

/// The parent pid of `pid`, if it exists.
pub fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The processes (zombies included) whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| ppid_of(p) == Some(pid))
        .collect();
    out.sort_unstable();
    out
}

impl Service {
    /// Stops tracking a pid this test has reaped itself, so that drop never signals a pid
    /// the kernel may have handed to another process since.
    pub fn forget(&self, pid: i32) {
        self.pids.lock().unwrap().remove(&pid);
    }

    /// Occurrences of `needle` in the shared stderr of every generation.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr().matches(needle).count()
    }
}

/// The value of `field=` in the first log line holding `message` (tracing's fmt output).
pub fn log_field(log: &str, message: &str, field: &str) -> Option<String> {
    log_fields(log, message, field).into_iter().next()
}

/// The values of `field=` in every log line holding `message`, in order.
pub fn log_fields(log: &str, message: &str, field: &str) -> Vec<String> {
    let key = format!("{field}=");
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            let at = l.find(&key)?;
            let value = l[at + key.len()..].split_whitespace().next()?;
            Some(value.trim_matches('"').to_owned())
        })
        .collect()
}

/// Copies `src` to `dest` (mode 0755) in a `cp` process of its own.
///
/// Never write a file that will be executed from this (multi-threaded) test process: a
/// process another test thread forks at that moment inherits the write descriptor until it
/// execs, and an exec of the file meanwhile fails with ETXTBSY ("Text file busy").
pub fn install_file(src: &Path, dest: &Path) {
    let status = Command::new("install")
        .arg("-m")
        .arg("755")
        .arg(src)
        .arg(dest)
        .status()
        .expect("run install");
    assert!(
        status.success(),
        "install {} {}",
        src.display(),
        dest.display()
    );
}

/// Puts `src` at `dest` the way a deploy does: copy beside it, then rename over it (a
/// running process keeps the old inode; the next exec of `dest` runs the new file).
pub fn swap_binary(dest: &Path, src: &Path) {
    let tmp = dest.with_extension("swap");
    install_file(src, &tmp);
    std::fs::rename(&tmp, dest).expect("rename the new binary into place");
}

/// Puts an executable shell script at `dest` (copied beside it, then renamed).
pub fn swap_script(dest: &Path, script: &str) {
    let text = dest.with_extension("script");
    std::fs::write(&text, script).expect("write the script");
    swap_binary(dest, &text);
}

/// The inode of the file a process executes (also when it was replaced or deleted).
pub fn exe_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| m.ino())
}

/// The inode of a path.
pub fn inode_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// Inodes of TCP sockets that are connections (not listening): transient, so left out when
/// descriptors of two generations are compared.
pub fn tcp_connection_inodes() -> BTreeSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    (cols.len() > 9 && cols[3] != "0A").then(|| cols[9].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What kinds of descriptors a process holds (`socket`, `pipe`, `anon_inode`, a path...),
/// sorted, leaving out TCP connections (clients come and go).
pub fn fd_kinds(pid: i32) -> Vec<String> {
    let conns = tcp_connection_inodes();
    let mut kinds: Vec<String> = fds_of(pid)
        .into_iter()
        .filter_map(|f| {
            let target = f
                .split_once("->")
                .map(|(_, t)| t.to_owned())
                .unwrap_or_default();
            let inode = target
                .strip_prefix("socket:[")
                .map(|i| i.trim_end_matches(']'));
            if inode.is_some_and(|i| conns.contains(i)) {
                return None;
            }
            Some(target.split(':').next().unwrap_or_default().to_owned())
        })
        .collect();
    kinds.sort();
    kinds
}

/// Writes `request` on a fresh connection and reads the whole answer.
pub fn http_exchange(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(WAIT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let resp = read_all(&mut s);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("bad response {resp:?}")))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status: {head}")));
    }
    Ok(body.to_owned())
}

/// `GET /` on a fresh connection; the pid in the answer.
pub fn http_pid_of(addr: SocketAddr) -> std::io::Result<i32> {
    let body = http_exchange(addr, "/")?;
    parse_pid(&body).ok_or_else(|| std::io::Error::other(body))
}

/// Waits (bounded) until the HTTP service at `addr` answers from a pid other than `old`.
pub fn wait_new_http_pid_of(addr: SocketAddr, old: i32) -> i32 {
    let mut pid = old;
    wait_until("a new pid over HTTP", || {
        pid = http_pid_of(addr).unwrap_or(old);
        pid != old
    });
    pid
}

/// What an [`HttpLoad`] saw.
#[derive(Debug, Default)]
pub struct HttpReport {
    /// Requests answered `200` with a pid.
    pub ok: usize,
    /// Requests on a reused keep-alive connection that the server closed before sending a
    /// byte (it was draining): retried once on a fresh connection, as HTTP clients do.
    pub retried: usize,
    /// Everything else that went wrong: a refused or reset fresh connection, a retry that
    /// failed too, a partial or wrong answer, a timeout.
    pub failed: usize,
    /// The first failures, with when they happened.
    pub failures: Vec<(std::time::SystemTime, String)>,
    /// Pids that answered.
    pub pids: BTreeSet<i32>,
}

impl HttpReport {
    fn merge(&mut self, r: HttpReport) {
        self.ok += r.ok;
        self.retried += r.retried;
        self.failed += r.failed;
        self.failures.extend(r.failures);
        self.pids.extend(r.pids);
    }

    fn fail(&mut self, msg: String) {
        self.failed += 1;
        if self.failures.len() < 20 {
            self.failures.push((std::time::SystemTime::now(), msg));
        }
    }
}

/// Why one HTTP exchange failed.
struct HttpError {
    /// Nothing at all came back: the connection was closed or reset first.
    before_any_byte: bool,
    msg: String,
}

/// One `GET /` on `conn`; returns the pid and whether the server will close the connection.
fn http_get_on(
    conn: &mut BufReader<TcpStream>,
    keep_alive: bool,
) -> Result<(i32, bool), HttpError> {
    use std::io::Write;
    let request: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    };
    let early = |e: std::io::Error| HttpError {
        before_any_byte: matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        ),
        msg: format!("before any byte: {e}"),
    };
    conn.get_mut().write_all(request).map_err(early)?;
    let mut status = String::new();
    match conn.read_line(&mut status) {
        Ok(0) => {
            return Err(HttpError {
                before_any_byte: true,
                msg: "closed before any byte".into(),
            });
        }
        Ok(_) => {}
        Err(e) if status.is_empty() => return Err(early(e)),
        Err(e) => {
            return Err(HttpError {
                before_any_byte: false,
                msg: format!("status line cut: {e}"),
            });
        }
    }
    let late = |msg: String| HttpError {
        before_any_byte: false,
        msg,
    };
    if !status.starts_with("HTTP/1.1 200") {
        return Err(late(format!("status {status:?}")));
    }
    let (mut length, mut close) = (None, !keep_alive);
    for _ in 0..100 {
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) => return Err(late("headers cut".into())),
            Ok(_) => {}
            Err(e) => return Err(late(format!("headers: {e}"))),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let length = length.ok_or_else(|| late("no content-length".into()))?;
    let mut body = vec![0u8; length.min(4096)];
    conn.read_exact(&mut body)
        .map_err(|e| late(format!("body: {e}")))?;
    let body = String::from_utf8_lossy(&body);
    let pid = parse_pid(&body).ok_or_else(|| late(format!("body {body:?}")))?;
    Ok((pid, close))
}

fn http_connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, HttpError> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| HttpError {
        before_any_byte: true,
        msg: format!("connect: {e}"),
    })?;
    let timeout = Some(Duration::from_secs(10));
    let _ = s.set_read_timeout(timeout);
    let _ = s.set_write_timeout(timeout);
    Ok(BufReader::new(s))
}

/// An HTTP client loop against the `http` example: some clients keep one connection alive
/// across requests, others open a fresh connection for every request. Bounded in count and
/// time; can be paused (every client idle, none mid-request) for descriptor snapshots.
pub struct HttpLoad {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    idle: Arc<AtomicUsize>,
    clients: usize,
    handles: Vec<JoinHandle<HttpReport>>,
}

impl HttpLoad {
    pub fn start(addr: SocketAddr, keep_alive: usize, fresh: usize, bound: Duration) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicUsize::new(0));
        let handles = (0..keep_alive + fresh)
            .map(|i| {
                let (stop, paused, idle) = (stop.clone(), paused.clone(), idle.clone());
                let reuse = i < keep_alive;
                std::thread::spawn(move || http_client(addr, reuse, bound, &stop, &paused, &idle))
            })
            .collect();
        HttpLoad {
            stop,
            paused,
            idle,
            clients: keep_alive + fresh,
            handles,
        }
    }

    /// Runs `f` while every client is between requests and none starts one.
    pub fn paused<T>(&self, f: impl FnOnce() -> T) -> T {
        self.paused.store(true, Ordering::SeqCst);
        wait_until("every client idle", || {
            self.idle.load(Ordering::SeqCst) == self.clients
                || self.handles.iter().any(|h| h.is_finished())
        });
        let out = f();
        self.paused.store(false, Ordering::SeqCst);
        out
    }

    pub fn finish(self) -> HttpReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = HttpReport::default();
        for h in self.handles {
            total.merge(h.join().expect("http load thread"));
        }
        total
    }
}

fn http_client(
    addr: SocketAddr,
    reuse: bool,
    bound: Duration,
    stop: &AtomicBool,
    paused: &AtomicBool,
    idle: &AtomicUsize,
) -> HttpReport {
    let deadline = Instant::now() + bound;
    let mut r = HttpReport::default();
    // A connection kept alive, and whether a response already came back on it.
    let mut conn: Option<(BufReader<TcpStream>, bool)> = None;
    let mut is_idle = false;
    for _ in 0..10_000_000 {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        if paused.load(Ordering::SeqCst) {
            if !is_idle {
                is_idle = true;
                idle.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if is_idle {
            is_idle = false;
            idle.fetch_sub(1, Ordering::SeqCst);
        }
        let (mut c, reused) = match conn.take() {
            Some(c) => c,
            None => match http_connect(addr) {
                Ok(c) => (c, false),
                Err(e) => {
                    r.fail(e.msg);
                    continue;
                }
            },
        };
        let outcome = match http_get_on(&mut c, reuse) {
            Err(e) if reused && e.before_any_byte => {
                // The keep-alive race: the old process closed this idle connection as it
                // began to drain. Retry once, on a fresh connection.
                r.retried += 1;
                http_connect(addr)
                    .and_then(|mut fresh| {
                        let out = http_get_on(&mut fresh, reuse)?;
                        c = fresh;
                        Ok(out)
                    })
                    .map_err(|e| HttpError {
                        msg: format!("retry: {}", e.msg),
                        ..e
                    })
            }
            Err(e) => Err(HttpError {
                msg: format!(
                    "{} connection: {}",
                    if reused { "reused" } else { "fresh" },
                    e.msg
                ),
                ..e
            }),
            ok => ok,
        };
        match outcome {
            Ok((pid, close)) => {
                r.ok += 1;
                r.pids.insert(pid);
                if reuse && !close {
                    conn = Some((c, true));
                }
            }
            Err(e) => r.fail(e.msg),
        }
    }
    if is_idle {
        idle.fetch_sub(1, Ordering::SeqCst);
    }
    r
}

/// The socket inodes `pid` holds.
pub fn socket_inodes(pid: i32) -> BTreeSet<String> {
    fds_of(pid)
        .iter()
        .filter_map(|f| {
            let inode = f.split_once("->socket:[")?.1;
            Some(inode.trim_end_matches(']').to_owned())
        })
        .collect()
}

/// A connection that `pid` has accepted (its socket shows among the process's descriptors).
pub fn connect_accepted_by(addr: SocketAddr, pid: i32) -> TcpStream {
    let before = socket_inodes(pid);
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    wait_until("the connection is accepted", || {
        !socket_inodes(pid).is_subset(&before)
    });
    conn
}

/// A request sent on its own connection from a thread; join it for the answer.
pub struct PendingRequest {
    pub local_port: u16,
    answer: JoinHandle<std::io::Result<String>>,
}

impl PendingRequest {
    /// Sends `GET path` at once and reads the answer in a thread.
    pub fn send(addr: SocketAddr, path: &str) -> PendingRequest {
        use std::io::Write;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send the request");
        let local_port = s.local_addr().unwrap().port();
        let answer = std::thread::spawn(move || {
            let resp = read_all(&mut s);
            match resp.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
                _ => Err(std::io::Error::other(format!("bad response {resp:?}"))),
            }
        });
        PendingRequest { local_port, answer }
    }

    /// Sends `GET path` and waits (bounded) until `pid` has accepted the connection: a
    /// socket appears in its descriptors. Nothing else may connect meanwhile (pause loads).
    pub fn send_accepted_by(addr: SocketAddr, path: &str, pid: i32) -> PendingRequest {
        let before = socket_inodes(pid);
        let request = PendingRequest::send(addr, path);
        wait_until("the request is accepted", || {
            !socket_inodes(pid).is_subset(&before)
        });
        request
    }

    /// The body of the answer.
    pub fn answer(self) -> std::io::Result<String> {
        self.answer.join().expect("request thread")
    }
}

/// Marks every descriptor of this test process above stderr close-on-exec, so that the
/// processes it starts get exactly the descriptors a test hands them (the test runner may
/// leak some into the test process, e.g. a jobserver pipe).
pub fn cloexec_leaked_fds() {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        if let Ok(bits) = fcntl(fd, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(bits);
            if !flags.contains(FdFlag::FD_CLOEXEC) {
                let _ = fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC));
            }
        }
    }
}

/// Kills and reaps, on drop, every process still carrying `TAG_VAR=tag`: the safety net for
/// processes a failing test never learnt the pid of.
pub struct KillTagged(pub String);

impl Drop for KillTagged {
    fn drop(&mut self) {
        let left = tagged_pids(&self.0);
        for &pid in &left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &left {
            wait_reaped(pid, Duration::from_secs(5));
        }
    }
}
