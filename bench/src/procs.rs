//! Processes: the bench is the child subreaper of everything it starts, one thread reaps
//! every exit and stamps its time, and a [`Sweep`] kills and reaps whatever is left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The bound on every single wait for a process or an answer.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// When and how a process ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exit {
    /// When the reaper collected it (it was a zombie for at most a scheduling delay).
    pub(crate) at: Instant,
    /// Exit code, or 128 + signal number.
    pub(crate) code: i32,
}

#[derive(Default)]
struct State {
    exits: HashMap<i32, Exit>,
    /// Bumped at every spawn, so that a reaper with no child wakes when there is one.
    spawned: u64,
}

/// Reaps every child of the bench (orphans included: the bench is their subreaper) on a
/// dedicated thread, so an exit is stamped the moment it happens.
pub(crate) struct Reaper {
    state: Mutex<State>,
    changed: Condvar,
}

impl Reaper {
    /// The one reaper: makes this process a child subreaper and starts the reaping thread.
    /// Processes started with `std::process::Command` must not be waited for through
    /// `Child` once this runs (the reaper collects them): use [`spawn`].
    pub(crate) fn get() -> &'static Reaper {
        static REAPER: OnceLock<&'static Reaper> = OnceLock::new();
        REAPER.get_or_init(|| {
            nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
            let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
                state: Mutex::default(),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("reaper".into())
                .spawn(move || reaper.run())
                .expect("reaper thread");
            reaper
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs for the life of the bench: blocks in `waitpid(-1)`; with no child, sleeps until
    /// the next spawn (or 100 ms).
    fn run(&self) {
        loop {
            let seen = self.lock().spawned;
            match waitpid(None::<Pid>, None) {
                Ok(WaitStatus::Exited(pid, code)) => self.record(pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.record(pid, 128 + sig as i32),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    let st = self.lock();
                    let _ = self
                        .changed
                        .wait_timeout_while(st, Duration::from_millis(100), |st| {
                            st.spawned == seen
                        });
                }
            }
        }
    }

    fn record(&self, pid: Pid, code: i32) {
        let at = Instant::now();
        self.lock().exits.insert(pid.as_raw(), Exit { at, code });
        self.changed.notify_all();
    }

    fn spawned(&self) {
        self.lock().spawned += 1;
        self.changed.notify_all();
    }

    /// Waits at most `bound` for `pid` to have exited.
    pub(crate) fn wait(&self, pid: i32, bound: Duration) -> Option<Exit> {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, bound, |st| !st.exits.contains_key(&pid))
            .unwrap_or_else(|e| e.into_inner());
        st.exits.get(&pid).copied()
    }
}

/// Starts `cmd` and returns its pid; the reaper collects it. Also returns the child's
/// stdout if `cmd` asked for a pipe.
pub(crate) fn spawn(
    cmd: &mut Command,
) -> std::io::Result<(i32, Option<std::process::ChildStdout>)> {
    let reaper = Reaper::get();
    let mut child = cmd.spawn()?;
    reaper.spawned();
    // The reaper owns the exit status from here on; `Child` is only dropped (which neither
    // waits nor kills).
    Ok((child.id() as i32, child.stdout.take()))
}

/// A command for a service binary: environment `envs`, stdin and stdout closed, stderr to
/// `log`.
pub(crate) fn service_command(exe: &Path, envs: &[(&str, String)], log: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match std::fs::File::create(log) {
        Ok(f) => cmd.stderr(f),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    cmd
}

/// Starts an HTTP service binary on a free loopback address, with `ADDR` and `envs`, stderr to
/// `<scratch>/<tag>.log`, and waits (bounded) until it answers with its own pid: its address,
/// pid and log.
pub(crate) fn start_http(
    exe: &Path,
    tag: &str,
    envs: &[(&str, String)],
) -> Result<(std::net::SocketAddr, i32, PathBuf), String> {
    let addr = free_addr()?;
    let log = scratch().join(format!("{tag}.log"));
    let mut all = vec![("ADDR", addr.to_string())];
    all.extend_from_slice(envs);
    let (pid, _) = spawn(&mut service_command(exe, &all, &log))
        .map_err(|e| format!("can't start {}: {e}", exe.display()))?;
    crate::probe::poll(WAIT, || crate::probe::http(addr).ok().filter(|p| *p == pid))
        .ok_or_else(|| format!("{tag} did not answer; log:\n{}", tail(&log, 20)))?;
    Ok((addr, pid, log))
}

/// The direct children of this process, from `/proc`.
fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...; comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(me)
            })
        })
        .collect()
}

/// Kills and reaps every process the bench started, and their descendants (which become
/// the bench's children as their parents die), in at most 10 rounds.
pub(crate) fn kill_all() {
    let reaper = Reaper::get();
    for _ in 0..10 {
        let kids = children();
        if kids.is_empty() {
            return;
        }
        for &pid in &kids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &kids {
            reaper.wait(pid, Duration::from_secs(5));
        }
    }
}

/// Kills and reaps everything the bench started when dropped: one per section, so that an
/// early return or a panic leaves nothing behind.
pub(crate) struct Sweep;

impl Drop for Sweep {
    fn drop(&mut self) {
        kill_all();
    }
}

/// The bench's scratch directory (logs, sockets), removed at the end.
pub(crate) fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tableflip-bench-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// The last `n` lines of a log, for error messages.
pub(crate) fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `sig` to `pid`.
pub(crate) fn signal(pid: i32, sig: Signal) -> Result<(), String> {
    kill(Pid::from_raw(pid), sig).map_err(|e| format!("kill -{sig} {pid}: {e}"))
}

/// Memory of `pid` in KiB, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// Peak resident set size (`VmHWM`).
    pub(crate) peak: u64,
    /// Resident set size now (`VmRSS`).
    pub(crate) rss: u64,
    /// Private anonymous memory resident now (`RssAnon`): the heap, stacks; not the
    /// program's code, whose pages are shared through the page cache.
    pub(crate) anon: u64,
}

/// The memory figures of `pid`.
pub(crate) fn memory_kib(pid: i32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Memory {
        peak: field("VmHWM:")?,
        rss: field("VmRSS:")?,
        anon: field("RssAnon:")?,
    })
}

/// A free loopback address (the port was free a moment ago).
pub(crate) fn free_addr() -> Result<std::net::SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}
