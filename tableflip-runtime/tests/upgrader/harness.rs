//! The test side: start a scenario as a real process, read what every generation reports,
//! and kill and reap everything it started, also when the test fails.
#![allow(unreachable_pub, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How long any single wait may take. Generous: the machine is shared and slow at times.
pub const WAIT: Duration = Duration::from_secs(30);

/// One line of a report: `<pid> <event> <key=value>...`.
#[derive(Clone, Debug)]
pub struct Event {
    pub pid: i32,
    pub name: String,
    pub fields: Vec<(String, String)>,
}

impl Event {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> String {
        self.get(key)
            .unwrap_or_else(|| panic!("event {self:?} has no field {key}"))
            .to_owned()
    }
}

/// A running scenario: the first process, its report file and its scratch directory.
pub struct Run {
    pub dir: PathBuf,
    report: PathBuf,
    first: Option<Child>,
}

fn unique_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tf-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

impl Run {
    /// A scratch directory and report file, with no process yet.
    pub fn prepare(scenario: &str) -> Run {
        let dir = unique_dir(scenario);
        let report = dir.join("report");
        std::fs::write(&report, "").expect("create report");
        Run {
            dir,
            report,
            first: None,
        }
    }

    /// The command that runs `scenario` in this test binary, in the scratch directory.
    pub fn command(&self, scenario: &str) -> Command {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.env("TF_SCENARIO", scenario)
            .env("TF_REPORT", &self.report)
            .env("TF_DIR", &self.dir)
            .env("RUST_LOG", "debug")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `scenario` with extra environment variables.
    pub fn start(scenario: &str, envs: &[(&str, &str)]) -> Run {
        let mut run = Run::prepare(scenario);
        let mut cmd = run.command(scenario);
        cmd.envs(envs.iter().copied());
        run.first = Some(cmd.spawn().expect("spawn scenario"));
        run
    }

    /// Adopts a process started by the test itself.
    pub fn adopt(&mut self, child: Child) {
        self.first = Some(child);
    }

    pub fn first_pid(&self) -> i32 {
        self.first
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("no first process")
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.report).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('\u{1e}'))
            .filter_map(|line| {
                let line = line.trim_end_matches('\u{1e}');
                let mut parts = line.split('\u{1f}');
                let pid = parts.next()?.parse().ok()?;
                let name = parts.next()?.to_owned();
                let fields = parts
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Some(Event { pid, name, fields })
            })
            .collect()
    }

    /// Waits (bounded) for the first event matching `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; events: {:#?}", self.events());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for an event by name, from any process.
    pub fn wait_event(&self, name: &str) -> Event {
        self.wait_for(name, |e| e.name == name)
    }

    /// Waits for an event by name from a process other than `pid`.
    pub fn wait_event_not_from(&self, name: &str, pid: i32) -> Event {
        self.wait_for(name, |e| e.name == name && e.pid != pid)
    }

    /// Creates a file the processes poll for (a command to them).
    pub fn touch(&self, name: &str) {
        std::fs::write(self.dir.join(name), "").expect("touch");
    }

    /// Waits (bounded) for the first process to exit and returns its exit code.
    pub fn wait_first_exit(&mut self) -> Option<i32> {
        let child = self.first.as_mut().expect("no first process");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                panic!("first process did not exit; events: {:#?}", self.events());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every pid that reported anything, plus the first process.
    fn pids(&self) -> BTreeSet<i32> {
        let mut pids: BTreeSet<i32> = self.events().iter().map(|e| e.pid).collect();
        if let Some(c) = &self.first {
            pids.insert(c.id() as i32);
        }
        pids.remove(&(std::process::id() as i32));
        pids
    }
}

/// Is `pid` gone (not running and not a zombie)?
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('X')),
    }
}

/// Is `pid` a zombie?
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits (bounded) until `pid` is gone.
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        reap(pid);
        if is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Reaps `pid` if it is our (adopted) child and has exited.
fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

impl Drop for Run {
    fn drop(&mut self) {
        let pids = self.pids();
        if let Some(first) = &mut self.first {
            let _ = first.kill();
            let _ = first.wait();
        }
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Orphaned generations were re-parented to us (we are a subreaper): reap them.
        for &pid in &pids {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                    _ => break,
                }
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads the inode of an open socket or file by path.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
