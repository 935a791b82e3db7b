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

/// The bound on every single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of a built example; builds the examples once per test process.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
    fn drop(&mut self) {
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
        let first = Command::new(exe)
            .envs(envs.iter().copied())
            .current_dir(&scratch.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn example");
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
        let pids: Vec<i32> = self.pids.lock().unwrap().iter().copied().collect();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &pids {
            wait_reaped(pid, Duration::from_secs(5));
        }
    }
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
        if let Ok(pid) = hello(addr) {
            if pid != old {
                return pid;
            }
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
