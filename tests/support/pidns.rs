//! A program as PID 1 of a new PID namespace, as in a container without an init
//! (`docker run` without `--init`), without Docker: `unshare --pid --fork --mount-proc`
//! (util-linux). The namespace shares the test's network, so its services listen on the
//! test's loopback; its own `/proc` is mounted in a mount namespace of its own, and
//! [`PidNamespace::processes`] reads it from inside (`nsenter -m`).
//!
//! Dropping it kills the namespace's PID 1 (the kernel then kills every process in it) and
//! reaps `unshare`, also when the test failed; should the test process die first, `unshare`
//! gets SIGKILL (`setpriv --pdeathsig`) and its child follows (`--kill-child`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Scratch, WAIT, children_of, spawn_retrying_busy};

/// One process as the namespace's `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsProcess {
    /// Its pid in the namespace.
    pub pid: i32,
    pub comm: String,
    /// `R`, `S`, `Z`...
    pub state: char,
    pub ppid: i32,
}

/// `unshare` and the namespace it made.
pub struct PidNamespace {
    unshare: Option<Child>,
    /// The namespace's PID 1, as the host sees it.
    pid1: i32,
    pub stderr_path: std::path::PathBuf,
}

impl PidNamespace {
    /// Is `unshare` (util-linux) there, and are we root? `Err` says why not, in one line.
    pub fn supported() -> Result<(), String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root (unshare --pid --mount-proc)".into());
        }
        for tool in ["unshare", "nsenter", "setpriv"] {
            let found = std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
            });
            if !found {
                return Err(format!(
                    "no `{tool}` on PATH (Debian: apt-get install util-linux)"
                ));
            }
        }
        Ok(())
    }

    /// Starts `exe` as PID 1 of a new PID namespace, with `envs`; its stderr goes to a file
    /// in `scratch`. Waits (bounded) until the namespace's PID 1 exists.
    pub fn start(exe: &Path, scratch: &Scratch, envs: &[(&str, &str)]) -> PidNamespace {
        let stderr_path = scratch.path(&format!("pidns-{}", super::free_port()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "unshare", "--pid", "--fork"])
            .args(["--mount-proc", "--kill-child=SIGKILL", "--"])
            .arg(exe)
            .envs(envs.iter().copied())
            .env_remove("NOTIFY_SOCKET")
            .current_dir(&scratch.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let unshare = spawn_retrying_busy(&mut cmd);
        let host = unshare.id() as i32;
        let mut ns = PidNamespace {
            unshare: Some(unshare),
            pid1: 0,
            stderr_path,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            // setpriv execs unshare (same pid), which forks the namespace's PID 1.
            if let Some(&pid1) = children_of(host).first() {
                ns.pid1 = pid1;
                return ns;
            }
            assert!(
                Instant::now() < deadline,
                "no PID 1 in the namespace within {WAIT:?}; stderr:\n{}",
                ns.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The namespace's PID 1, as the host sees it (the pid to signal).
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// Everything written to stderr in the namespace.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `sig` to the namespace's PID 1 (as `docker kill -s` does).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid1), sig).expect("signal the namespace's PID 1");
    }

    /// Every process of the namespace, read from its own `/proc`.
    pub fn processes(&self) -> Vec<NsProcess> {
        let out = Command::new("timeout")
            .args(["10", "nsenter", "-t", &self.pid1.to_string(), "-m", "--"])
            .args([
                "sh",
                "-c",
                "for s in /proc/[0-9]*/stat; do cat \"$s\" 2>/dev/null; echo; done",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut procs: Vec<NsProcess> = text
            .lines()
            .filter_map(|l| {
                let (head, rest) = l.rsplit_once(')')?;
                let (pid, comm) = head.split_once(" (")?;
                let mut fields = rest.split_whitespace();
                Some(NsProcess {
                    pid: pid.trim().parse().ok()?,
                    comm: comm.to_owned(),
                    state: fields.next()?.chars().next()?,
                    ppid: fields.next()?.parse().ok()?,
                })
            })
            // The sh and cat that read /proc are the namespace's too.
            .filter(|p| p.comm != "sh" && p.comm != "cat" && p.comm != "nsenter")
            .collect();
        procs.sort_by_key(|p| p.pid);
        procs
    }

    /// The host's pid of a process of the namespace given by its namespace pid.
    pub fn host_pid(&self, pid: i32) -> Option<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid1)).ok()?;
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|host| {
                std::fs::read_link(format!("/proc/{host}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
                    && std::fs::read_to_string(format!("/proc/{host}/status")).is_ok_and(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("NSpid:"))
                            .and_then(|l| l.split_whitespace().last()?.parse::<i32>().ok())
                            == Some(pid)
                    })
            })
    }

    /// Waits (bounded) for `unshare` to exit; its exit code (that of the namespace's PID 1).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.unshare.as_mut().expect("unshare");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.unshare = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the namespace did not end within {WAIT:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        if let Some(mut unshare) = self.unshare.take() {
            // Only while it is still unshare's child: then the pid is surely the namespace's.
            if super::ppid_of(self.pid1) == Some(unshare.id() as i32) {
                let _ = kill(Pid::from_raw(self.pid1), Signal::SIGKILL);
            }
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
    }
}
